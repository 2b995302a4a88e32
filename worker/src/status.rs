//! Task status, kept in the group's status topic so that any worker can answer for all:
//! `task/<pipeline>/<worker>` holds a running task's latest status (removed when the task
//! stops), `finished/<pipeline>/<version>/<worker>` what a finished task did (kept, so a
//! finished snapshot is not run again when its worker leaves).

use crate::assign::{Plan, Unit};
use crate::store::{PipelineDef, TargetState};
use crate::tasks::{TaskState, TaskStatus};
use crate::topic::CompactedTopic;
use bytes::Bytes;
use ferry_core::Result;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The status topic.
#[derive(Clone)]
pub struct StatusBoard {
    topic: CompactedTopic,
}

fn task_key(pipeline: &str, worker: &str) -> String {
    format!("task/{pipeline}/{worker}")
}

fn finished_key(pipeline: &str, version: i64, worker: &str) -> String {
    format!("finished/{pipeline}/{version}/{worker}")
}

/// A pipeline's status as `GET /pipelines/{name}/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineStatus {
    /// The pipeline.
    pub name: String,
    /// `RUNNING`, `PAUSED`, `FAILED`, `FINISHED`, or `UNASSIGNED` (no worker runs it yet).
    pub state: String,
    /// One entry per worker running part of it.
    pub tasks: Vec<TaskStatus>,
    /// The first task error, if any.
    pub error: Option<String>,
}

impl StatusBoard {
    /// The board on `topic`.
    pub fn new(topic: CompactedTopic) -> Self {
        StatusBoard { topic }
    }

    /// Publishes this worker's task statuses and removes those of tasks it no longer runs
    /// (`published`: the keys it wrote last time; updated).
    pub async fn publish(
        &self,
        worker: &str,
        statuses: &[TaskStatus],
        published: &mut BTreeSet<String>,
    ) -> Result<()> {
        let mut now = BTreeSet::new();
        for s in statuses {
            let value = Bytes::from(serde_json::to_vec(s).unwrap_or_default());
            let key = if s.state == TaskState::Finished {
                finished_key(&s.pipeline, s.version, worker)
            } else {
                task_key(&s.pipeline, worker)
            };
            let unchanged = self.topic.get(&key).is_some_and(|e| {
                serde_json::from_slice::<TaskStatus>(&e.value)
                    .is_ok_and(|old| same_but_time(&old, s))
            });
            if !unchanged {
                self.topic.put(&key, Some(value)).await?;
            }
            if s.state != TaskState::Finished {
                now.insert(key);
            }
        }
        for gone in published.difference(&now) {
            self.topic.put(gone, None).await?;
        }
        *published = now;
        Ok(())
    }

    fn statuses(&self, prefix: &str) -> Vec<TaskStatus> {
        self.topic
            .entries()
            .into_iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter_map(|(_, e)| serde_json::from_slice(&e.value).ok())
            .collect()
    }

    /// Units of `def` that a task finished (in its current version).
    pub fn finished_units(&self, def: &PipelineDef) -> BTreeSet<Unit> {
        let prefix = format!("finished/{}/{}/", def.name, def.version);
        let mut out = BTreeSet::new();
        for s in self.statuses(&prefix) {
            if s.whole {
                out.insert(Unit::whole(&def.name));
            } else {
                for p in &s.partitions {
                    out.insert(Unit::partition(&def.name, &p.topic, p.partition));
                }
            }
        }
        out
    }

    /// The status of `def` given the group's current plan.
    pub fn pipeline_status(&self, def: &PipelineDef, plan: &Plan) -> PipelineStatus {
        let members: BTreeSet<&str> = plan.members.iter().map(|m| m.url.as_str()).collect();
        let mut tasks: Vec<TaskStatus> = self
            .statuses(&format!("task/{}/", def.name))
            .into_iter()
            .filter(|s| s.version == def.version && members.contains(s.worker.as_str()))
            .collect();
        let finished = self.statuses(&format!("finished/{}/{}/", def.name, def.version));
        let live: BTreeSet<String> = tasks.iter().map(|t| t.worker.clone()).collect();
        let any_finished = !finished.is_empty();
        tasks.extend(finished.into_iter().filter(|f| !live.contains(&f.worker)));
        tasks.sort_by(|a, b| a.worker.cmp(&b.worker));
        let assigned: BTreeMap<&str, usize> = plan
            .members
            .iter()
            .map(|m| {
                (
                    m.url.as_str(),
                    m.units.iter().filter(|u| u.pipeline == def.name).count(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let error = tasks.iter().find_map(|t| t.error.clone());
        let state = if def.state == TargetState::Paused {
            "PAUSED"
        } else if tasks.iter().any(|t| t.state == TaskState::Failed) {
            "FAILED"
        } else if assigned.is_empty() {
            if any_finished {
                "FINISHED"
            } else {
                "UNASSIGNED"
            }
        } else if assigned.keys().all(|w| {
            tasks
                .iter()
                .any(|t| t.worker == *w && t.state == TaskState::Finished)
        }) {
            "FINISHED"
        } else {
            "RUNNING"
        };
        PipelineStatus {
            name: def.name.clone(),
            state: state.to_string(),
            tasks,
            error,
        }
    }
}

/// Whether two statuses differ only in when they were written (no need to write again).
fn same_but_time(a: &TaskStatus, b: &TaskStatus) -> bool {
    let mut a = a.clone();
    a.updated_ms = b.updated_ms;
    &a == b
}
