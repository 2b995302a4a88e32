//! Membership: joins the group with Ferry's protocol, applies each assignment, heartbeats,
//! and rejoins when the group, the pipelines or their partitions change.

use crate::assign::{self, MemberMetadata, Plan, Unit};
use crate::fence::GroupFence;
use crate::store::PipelineDef;
use crate::tasks::{Desired, Tasks};
use crate::{Assigned, Shared};
use bytes::Bytes;
use ferry_core::{Error, Result};
use ferry_kafka::{ClientError, GroupMember, GroupProtocol, GroupTimeouts, Heartbeat};
use futures::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the leader looks for new partitions of the pipelines' topics.
const UNITS_CHECK: Duration = Duration::from_secs(30);
/// How long a stopping worker lets a rejoin under way finish.
const FINISH_REJOIN: Duration = Duration::from_secs(15);
/// How often status is written even when nothing changed (positions move).
const STATUS_EVERY: Duration = Duration::from_secs(3);

/// A pipeline's units as resolved for one of its versions, and when.
struct ResolvedUnits {
    version: i64,
    at: Instant,
    units: Vec<Unit>,
}

/// Ferry's group protocol, backed by the worker's shared state.
struct WorkerProtocol {
    shared: Arc<Shared>,
    /// Units of each pipeline version, resolved by the leader (partitions looked up once per
    /// version and again every [`UNITS_CHECK`]).
    cache: Mutex<BTreeMap<String, ResolvedUnits>>,
}

impl GroupProtocol for WorkerProtocol {
    fn protocol_type(&self) -> &str {
        assign::PROTOCOL_TYPE
    }

    fn protocols(&self) -> ferry_kafka::Result<Vec<(String, Bytes)>> {
        let meta = MemberMetadata {
            url: self.shared.url.clone(),
            owned: lock(&self.shared.owned).clone(),
        };
        let bytes = serde_json::to_vec(&meta)
            .map_err(|e| ClientError::Config(format!("encoding member metadata: {e}")))?;
        Ok(vec![(assign::ASSIGNOR.to_string(), Bytes::from(bytes))])
    }

    fn assign<'a>(
        &'a self,
        _client: &'a ferry_kafka::Client,
        _protocol: &'a str,
        members: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, ferry_kafka::Result<BTreeMap<String, Bytes>>> {
        Box::pin(async move {
            let mut metas = BTreeMap::new();
            for (id, raw) in members {
                // A member whose metadata cannot be read still gets work; it claims nothing.
                let meta: MemberMetadata = serde_json::from_slice(raw).unwrap_or_else(|e| {
                    tracing::warn!(member = %id, error = %e, "unreadable member metadata");
                    MemberMetadata::default()
                });
                metas.insert(id.clone(), meta);
            }
            let units = self.units().await;
            let mut plan = assign::plan(&metas, &units);
            plan.leader = self.shared.url.clone();
            tracing::info!(
                members = metas.len(),
                units = units.len(),
                revoked = plan.revoked.len(),
                "leader: assignment planned"
            );
            let bytes = Bytes::from(
                serde_json::to_vec(&plan)
                    .map_err(|e| ClientError::Config(format!("encoding the plan: {e}")))?,
            );
            Ok(members
                .iter()
                .map(|(id, _)| (id.clone(), bytes.clone()))
                .collect())
        })
    }
}

impl WorkerProtocol {
    /// Every unit of work of the group now: each pipeline's partitions (or the pipeline
    /// whole), less what finished.
    async fn units(&self) -> BTreeSet<Unit> {
        let defs = self.shared.store.all();
        let mut out = BTreeSet::new();
        for def in defs.values() {
            let Some(units) = self.units_of(def).await else {
                continue;
            };
            let finished = self.shared.status.finished_units(def);
            out.extend(units.into_iter().filter(|u| !finished.contains(u)));
        }
        out
    }

    /// A pipeline's units: its source's partitions, or the pipeline whole. `None` when they
    /// cannot be known now (its cluster is unreachable): it is left out of this round rather
    /// than run whole, which could overlap a partition another worker runs.
    async fn units_of(&self, def: &PipelineDef) -> Option<Vec<Unit>> {
        if let Some(r) = lock(&self.cache).get(&def.name) {
            if r.version == def.version && r.at.elapsed() < UNITS_CHECK {
                return Some(r.units.clone());
            }
        }
        let units = match resolve_units(&self.shared, def).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(pipeline = %def.name, error = %ferry_core::error_chain(&e), "cannot list the pipeline's partitions; not assigning it this round");
                return lock(&self.cache)
                    .get(&def.name)
                    .filter(|r| r.version == def.version)
                    .map(|r| r.units.clone());
            }
        };
        lock(&self.cache).insert(
            def.name.clone(),
            ResolvedUnits {
                version: def.version,
                at: Instant::now(),
                units: units.clone(),
            },
        );
        Some(units)
    }
}

/// Builds the pipeline (not run) and asks its source for its partitions.
async fn resolve_units(shared: &Shared, def: &PipelineDef) -> Result<Vec<Unit>> {
    let file = format!("pipeline '{}'", def.name);
    let mut pipeline = match shared.registry.load_pipeline(&def.config, &file) {
        Ok(p) => p,
        // A pipeline that does not build runs whole, so its task reports the error.
        Err(_) => return Ok(vec![Unit::whole(&def.name)]),
    };
    let partitions = tokio::time::timeout(Duration::from_secs(30), pipeline.source.partitions())
        .await
        .map_err(|_| Error::connection(file.clone(), true, "listing partitions took over 30s"))??;
    Ok(match partitions {
        // Nothing to split (no topic matches yet): run it whole, so its task reports why.
        None => vec![Unit::whole(&def.name)],
        Some(ps) if ps.is_empty() => vec![Unit::whole(&def.name)],
        Some(ps) => ps
            .into_iter()
            .map(|(t, p)| Unit::partition(&def.name, &t, p))
            .collect(),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why the steady state ended.
enum Next {
    Rejoin,
    Expired,
    Stop,
}

/// Runs membership until `stop` turns true.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Result<()> {
    let protocol = Arc::new(WorkerProtocol {
        shared: shared.clone(),
        cache: Mutex::new(BTreeMap::new()),
    });
    let session = shared.config.session_timeout.get();
    let timeouts = GroupTimeouts {
        session,
        rebalance: shared.config.rebalance_timeout.get(),
    };
    let fence = Arc::new(GroupFence::new(
        shared.client.clone(),
        &shared.config.group,
        session,
    ));
    let mut tasks = Tasks::new(shared.registry.clone(), fence.clone());
    let mut published = BTreeSet::new();
    let group = shared.config.group.clone();
    let mut member = loop {
        match shared
            .client
            .join_group_with(group.clone(), protocol.clone(), timeouts)
            .await
        {
            Ok(m) => break m,
            Err(e) => {
                tracing::warn!(group = %group, error = %e, "cannot join the group yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                }
            }
        }
    };
    loop {
        let revoked = apply_assignment(&shared, &member, &fence, &mut tasks).await;
        publish(&shared, &tasks, &mut published).await;
        let next = if revoked {
            // Units were taken away: they are stopped; rejoin so they can move.
            Next::Rejoin
        } else {
            steady(
                &shared,
                &member,
                &fence,
                &mut tasks,
                &mut published,
                &protocol,
                &mut stop,
            )
            .await
        };
        match next {
            Next::Stop => break,
            Next::Expired => {
                // The group dropped this worker: its partitions may be someone else's now.
                fence.expire();
                tasks.stop_all().await;
                *lock(&shared.owned) = Vec::new();
                publish(&shared, &tasks, &mut published).await;
            }
            Next::Rejoin => {}
        }
        if !rejoin(&mut member, &mut stop).await {
            break;
        }
        if *stop.borrow() {
            // Stopping: take the new generation (the tasks' fence needs it), then stop.
            apply_assignment(&shared, &member, &fence, &mut tasks).await;
            break;
        }
    }
    tasks.stop_all().await;
    *lock(&shared.owned) = Vec::new();
    publish(&shared, &tasks, &mut published).await;
    if let Err(e) = member.leave().await {
        tracing::warn!(error = %e, "could not leave the group (the others take over after the session timeout)");
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Rejoins until it works; `false` when stopped meanwhile. A rejoin under way when the stop
/// comes is given [`FINISH_REJOIN`] to complete, so the tasks close (and commit what they
/// read) as members of the generation the coordinator now has, not one it already replaced.
async fn rejoin(member: &mut GroupMember, stop: &mut watch::Receiver<bool>) -> bool {
    loop {
        let stopping = *stop.borrow();
        if stopping {
            let finished = tokio::time::timeout(FINISH_REJOIN, member.rejoin()).await;
            return matches!(finished, Ok(Ok(())));
        }
        tokio::select! {
            r = member.rejoin() => match r {
                Ok(()) => return true,
                Err(e) => tracing::warn!(error = %e, "cannot rejoin the group yet; retrying"),
            },
            _ = stop.wait_for(|s| *s) => continue,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.wait_for(|s| *s) => return false,
        }
    }
}

/// Takes the member's new assignment: records the plan, moves the fence to the new
/// generation, and makes the tasks match. Returns whether units were taken away.
async fn apply_assignment(
    shared: &Shared,
    member: &GroupMember,
    fence: &GroupFence,
    tasks: &mut Tasks,
) -> bool {
    let plan: Plan = match serde_json::from_slice(member.raw_assignment()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "unreadable assignment from the leader (a worker of another version?); running nothing this generation");
            Plan::default()
        }
    };
    let mine = plan.units_of(member.member_id());
    tracing::info!(generation = member.generation(), member = %member.member_id(), leader = member.is_leader(), units = mine.len(), "assignment received");
    *shared.plan.write().unwrap_or_else(|p| p.into_inner()) = Some(Assigned {
        generation: member.generation(),
        member_id: member.member_id().to_string(),
        plan,
    });
    fence.joined(member.member_id(), member.generation());
    let desired = Desired::from_units(&mine, &shared.store.all());
    let revoked = tasks.apply(desired).await;
    *lock(&shared.owned) = tasks.owned_units();
    revoked
}

/// Heartbeats, follows pipeline changes and publishes status until a rebalance is due.
#[allow(clippy::too_many_arguments)]
async fn steady(
    shared: &Shared,
    member: &GroupMember,
    fence: &GroupFence,
    tasks: &mut Tasks,
    published: &mut BTreeSet<String>,
    protocol: &WorkerProtocol,
    stop: &mut watch::Receiver<bool>,
) -> Next {
    let heartbeat_every = shared.config.session_timeout.get() / 5;
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    let mut units_tick = tokio::time::interval(UNITS_CHECK);
    units_tick.reset();
    // Mark the definitions seen first, then read them: a change after this wakes the loop.
    let mut defs_changed = shared.store.topic().changes();
    defs_changed.borrow_and_update();
    let mut known = shared.store.all();
    // A definition may have changed since the assignment was applied.
    let mine = shared.plan().units_of(member.member_id());
    let revoked = tasks.apply(Desired::from_units(&mine, &known)).await;
    *lock(&shared.owned) = tasks.owned_units();
    if revoked {
        return Next::Rejoin;
    }
    let mut task_changes = tasks.changes();
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Next::Stop,
            _ = heartbeat.tick() => match member.heartbeat().await {
                Ok(Heartbeat::Ok) => { fence.alive(); failures = 0; }
                Ok(Heartbeat::RebalanceNeeded) | Ok(Heartbeat::StaleGeneration) => return Next::Rejoin,
                Ok(Heartbeat::Expired) => {
                    tracing::warn!("the group dropped this worker (session timeout passed without a heartbeat); stopping its tasks and rejoining");
                    return Next::Expired;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures % 30 == 0 {
                        tracing::warn!(error = %e, "heartbeat failed; retrying");
                    }
                }
            },
            r = defs_changed.changed() => {
                if r.is_err() { return Next::Stop; }
                let now = shared.store.all();
                let names_changed = now.keys().ne(known.keys());
                if names_changed {
                    // A pipeline was added or removed: the leader must divide the work again.
                    return Next::Rejoin;
                }
                if now != known {
                    // New text, paused, resumed or restarted: this worker's tasks follow.
                    let mine = shared.plan().units_of(member.member_id());
                    if tasks.apply(Desired::from_units(&mine, &now)).await {
                        *lock(&shared.owned) = tasks.owned_units();
                        return Next::Rejoin;
                    }
                    *lock(&shared.owned) = tasks.owned_units();
                    // The partitions of a changed pipeline may differ now.
                    if member.is_leader() && units_moved(shared, protocol).await {
                        return Next::Rejoin;
                    }
                }
                known = now;
            },
            _ = task_changes.changed() => publish(shared, tasks, published).await,
            _ = status_tick.tick() => publish(shared, tasks, published).await,
            _ = units_tick.tick(), if member.is_leader() => {
                if units_moved(shared, protocol).await {
                    tracing::info!("leader: the pipelines' partitions changed; rebalancing");
                    return Next::Rejoin;
                }
            },
        }
    }
}

/// Whether the units the leader would plan now differ from those in the current plan.
async fn units_moved(shared: &Shared, protocol: &WorkerProtocol) -> bool {
    let plan = shared.plan();
    let planned: BTreeSet<Unit> = plan
        .members
        .iter()
        .flat_map(|m| m.units.iter().cloned())
        .chain(plan.revoked.iter().cloned())
        .collect();
    let now = protocol.units().await;
    // Finished units leave the plan at the next rebalance; only new or vanished work counts.
    now.iter().any(|u| !planned.contains(u))
        || planned
            .iter()
            .any(|u| !now.contains(u) && shared.store.get(&u.pipeline).is_none())
}

/// Writes this worker's task statuses (failures are logged: status is advisory).
async fn publish(shared: &Shared, tasks: &Tasks, published: &mut BTreeSet<String>) {
    let statuses = tasks.statuses(&shared.url);
    if let Err(e) = shared
        .status
        .publish(&shared.url, &statuses, published)
        .await
    {
        tracing::warn!(error = %ferry_core::error_chain(&e), "cannot publish task status");
    }
}
