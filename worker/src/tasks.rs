//! The tasks a worker runs: one per pipeline it has units of, started, stopped and
//! restarted as the assignment and the pipeline definitions change.

use crate::assign::Unit;
use crate::fence::GroupFence;
use crate::store::{PipelineDef, TargetState};
use ferry_core::{Registry, RunSummary, TaskProgress, TaskScope};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A task's state, as the REST API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Reading and writing.
    Running,
    /// Stopped by `pause`; resumes where it stopped.
    Paused,
    /// Stopped by an error (shown with it) until the pipeline is restarted or changed.
    Failed,
    /// Its source finished (a snapshot or a restore) and everything is written.
    Finished,
}

/// What a worker should run of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The definition (its `version` changes with every write).
    pub def: PipelineDef,
    /// Its partitions this worker runs, or `None` for the whole pipeline.
    pub partitions: Option<BTreeSet<(String, i32)>>,
}

impl Desired {
    /// Groups this worker's units by pipeline, with each pipeline's definition.
    pub fn from_units(
        units: &[Unit],
        defs: &BTreeMap<String, PipelineDef>,
    ) -> BTreeMap<String, Desired> {
        let mut out: BTreeMap<String, Desired> = BTreeMap::new();
        for u in units {
            let Some(def) = defs.get(&u.pipeline) else {
                continue;
            };
            let d = out.entry(u.pipeline.clone()).or_insert_with(|| Desired {
                def: def.clone(),
                partitions: u.partition.as_ref().map(|_| BTreeSet::new()),
            });
            if let (Some(set), Some(p)) = (d.partitions.as_mut(), u.partition.as_ref()) {
                set.insert(p.clone());
            }
        }
        out
    }
}

/// One running (or ended) task and what it reports.
struct Task {
    desired: Desired,
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<()>>,
    report: Arc<Mutex<Report>>,
    progress: Arc<TaskProgress>,
}

/// A task's state and last error.
#[derive(Debug, Clone)]
struct Report {
    state: TaskState,
    error: Option<String>,
}

/// A task's status, published to the status topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The pipeline.
    pub pipeline: String,
    /// The definition version the task runs.
    pub version: i64,
    /// The worker (its URL).
    pub worker: String,
    /// Its state.
    pub state: TaskState,
    /// Its units, with positions where the source reports them.
    pub partitions: Vec<PartitionStatus>,
    /// Whether it runs the whole pipeline (not split by partition).
    pub whole: bool,
    /// The error that stopped it.
    pub error: Option<String>,
    /// When this status was written, milliseconds since the epoch.
    pub updated_ms: i64,
    /// The last checkpoint this task wrote (none yet, or the pipeline keeps none).
    #[serde(default)]
    pub checkpoint: Option<ferry_core::LastCheckpoint>,
}

/// One partition of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStatus {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset the task reads (-1 before it started).
    pub offset: i64,
    /// Records between that offset and the high watermark.
    pub lag: i64,
}

/// The tasks of one worker.
pub struct Tasks {
    registry: Arc<Registry>,
    fence: Arc<GroupFence>,
    tasks: BTreeMap<String, Task>,
    /// Woken whenever a task's state changes (status is then published at once).
    changed: watch::Sender<u64>,
}

impl Tasks {
    /// No tasks yet.
    pub fn new(registry: Arc<Registry>, fence: Arc<GroupFence>) -> Self {
        Tasks {
            registry,
            fence,
            tasks: BTreeMap::new(),
            changed: watch::channel(0).0,
        }
    }

    /// Changes whenever a task's state changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The units this worker runs now (stopping ones included, as they still write).
    pub fn owned_units(&self) -> Vec<Unit> {
        let mut out = Vec::new();
        for (name, t) in &self.tasks {
            match &t.desired.partitions {
                None => out.push(Unit::whole(name)),
                Some(ps) => {
                    out.extend(ps.iter().map(|(topic, p)| Unit::partition(name, topic, *p)))
                }
            }
        }
        out
    }

    /// Makes the running tasks match `desired`: stops what is no longer wanted (or changed,
    /// or paused), then starts what is missing. Returns whether a task was stopped because
    /// its units were taken away (the worker then rejoins so they can move).
    pub async fn apply(&mut self, desired: BTreeMap<String, Desired>) -> bool {
        let mut revoked = false;
        let names: Vec<String> = self.tasks.keys().cloned().collect();
        for name in names {
            let keep = match (self.tasks.get(&name), desired.get(&name)) {
                (Some(t), Some(d)) => {
                    t.desired.def.version == d.def.version
                        && t.desired.partitions == d.partitions
                        && t.desired.def.state == d.def.state
                }
                _ => false,
            };
            if keep {
                continue;
            }
            if let Some(t) = self.tasks.remove(&name) {
                // Units taken away (or the pipeline gone): the group must learn they are free.
                revoked |= desired
                    .get(&name)
                    .is_none_or(|d| d.partitions != t.desired.partitions);
                stop_task(&name, t).await;
                self.notify();
            }
        }
        for (name, d) in desired {
            if self.tasks.contains_key(&name) {
                continue;
            }
            let task = self.start(&name, d);
            self.tasks.insert(name, task);
            self.notify();
        }
        revoked
    }

    /// Stops every task (shutdown, or the worker was dropped from the group).
    pub async fn stop_all(&mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for (name, t) in tasks {
            stop_task(&name, t).await;
        }
        self.notify();
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Starts (or, when paused, only registers) the task of `name`.
    fn start(&self, name: &str, desired: Desired) -> Task {
        let (stop, stop_rx) = watch::channel(false);
        let progress = Arc::new(TaskProgress::default());
        if let Some(ps) = &desired.partitions {
            // Positions appear as the source starts; until then the partitions are listed.
            for (t, p) in ps {
                progress.set(t, *p, -1, None);
            }
        }
        let paused = desired.def.state == TargetState::Paused;
        let report = Arc::new(Mutex::new(Report {
            state: if paused {
                TaskState::Paused
            } else {
                TaskState::Running
            },
            error: None,
        }));
        let handle = if paused {
            None
        } else {
            let scope = TaskScope {
                partitions: desired.partitions.clone(),
                fence: Some(self.fence.clone()),
                progress: progress.clone(),
            };
            Some(tokio::spawn(run_task(
                self.registry.clone(),
                name.to_string(),
                desired.def.clone(),
                scope,
                stop_rx,
                report.clone(),
                self.changed.clone(),
            )))
        };
        tracing::info!(pipeline = %name, version = desired.def.version, partitions = ?desired.partitions, paused, "task started");
        Task {
            desired,
            stop,
            handle,
            report,
            progress,
        }
    }

    /// The status of every task, for the status topic.
    pub fn statuses(&self, worker: &str) -> Vec<TaskStatus> {
        self.tasks
            .iter()
            .map(|(name, t)| {
                let report = t
                    .report
                    .lock()
                    .map(|r| r.clone())
                    .unwrap_or_else(|p| p.into_inner().clone());
                let partitions = t
                    .progress
                    .snapshot()
                    .into_iter()
                    .map(|((topic, partition), p)| PartitionStatus {
                        topic,
                        partition,
                        offset: p.offset,
                        lag: p.lag(),
                    })
                    .collect();
                TaskStatus {
                    pipeline: name.clone(),
                    version: t.desired.def.version,
                    worker: worker.to_string(),
                    state: report.state,
                    partitions,
                    whole: t.desired.partitions.is_none(),
                    error: report.error,
                    updated_ms: crate::now_ms(),
                    checkpoint: t.progress.last_checkpoint(),
                }
            })
            .collect()
    }
}

/// Stops a task: asks it to stop (it writes what it read and its checkpoint), waits up to a
/// minute, then cancels it.
async fn stop_task(name: &str, mut t: Task) {
    let _ = t.stop.send(true);
    if let Some(handle) = t.handle.take() {
        let abort = handle.abort_handle();
        if tokio::time::timeout(Duration::from_secs(60), handle)
            .await
            .is_err()
        {
            tracing::warn!(pipeline = %name, "task did not stop within 60s; cancelling it");
            abort.abort();
        }
    }
    tracing::info!(pipeline = %name, "task stopped");
}

/// Builds and runs one task until it ends or is stopped, recording how it ended.
async fn run_task(
    registry: Arc<Registry>,
    name: String,
    def: PipelineDef,
    scope: TaskScope,
    stop: watch::Receiver<bool>,
    report: Arc<Mutex<Report>>,
    changed: watch::Sender<u64>,
) {
    let shared = scope.partitions.is_some();
    let source_name = format!("pipeline '{name}'");
    let build = || -> ferry_core::Result<ferry_core::Pipeline> {
        let mut pipeline =
            registry.load_pipeline_scoped(&def.config, &source_name, Some(&scope))?;
        pipeline.delivery.shared_checkpoint = shared;
        pipeline.delivery.progress = Some(scope.progress.clone());
        // Built again after an outage: the task runs, the outage is over.
        if let Ok(mut r) = report.lock() {
            r.error = None;
        }
        Ok(pipeline)
    };
    // A continuous task whose storage went away is restarted (shown as running, with the
    // outage as its error, until it runs again).
    let restarting = {
        let report = report.clone();
        let changed = changed.clone();
        move |e: &ferry_core::Error, wait: Duration| {
            if let Ok(mut r) = report.lock() {
                r.error = Some(format!(
                    "storage unavailable, restarting in {}s: {}",
                    wait.as_secs(),
                    ferry_core::error_chain(e)
                ));
            }
            changed.send_modify(|n| *n += 1);
        }
    };
    let result: ferry_core::Result<RunSummary> = match build() {
        Ok(pipeline) => {
            ferry_core::runtime::run_restarting(pipeline, build, stop, restarting).await
        }
        Err(e) => Err(e),
    };
    let (state, error) = match result {
        Ok(summary) if summary.interrupted => {
            tracing::info!(pipeline = %name, records = summary.records, "task stopped after writing what it read");
            return;
        }
        Ok(summary) => {
            tracing::info!(pipeline = %name, records = summary.records, "task finished");
            (TaskState::Finished, None)
        }
        Err(e) => {
            let msg = ferry_core::error_chain(&e);
            tracing::error!(pipeline = %name, error = %msg, "task failed");
            (TaskState::Failed, Some(msg))
        }
    };
    if let Ok(mut r) = report.lock() {
        r.state = state;
        r.error = error;
    }
    changed.send_modify(|n| *n += 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str) -> PipelineDef {
        PipelineDef {
            name: name.into(),
            config: String::new(),
            state: TargetState::Running,
            file: None,
            restarts: 0,
            version: 7,
        }
    }

    #[test]
    fn units_become_one_task_per_pipeline() {
        let defs = BTreeMap::from([("a".to_string(), def("a")), ("b".to_string(), def("b"))]);
        let units = vec![
            Unit::partition("a", "t", 0),
            Unit::partition("a", "t", 2),
            Unit::whole("b"),
            // A pipeline deleted since the plan was made runs nothing.
            Unit::whole("gone"),
        ];
        let d = Desired::from_units(&units, &defs);
        assert_eq!(d.len(), 2);
        assert_eq!(
            d["a"].partitions,
            Some(BTreeSet::from([("t".to_string(), 0), ("t".to_string(), 2)]))
        );
        assert_eq!(d["b"].partitions, None);
        assert_eq!(d["a"].def.version, 7);
    }
}
