//! Ferry's group protocol and its assignor: how the workers of a group divide the pipelines.
//!
//! The unit of work is a pipeline's partition (a Kafka source's topic-partition), or the
//! whole pipeline when its source cannot be split. Each worker says, when it joins, which
//! units it runs; the leader then plans:
//!
//! - **sticky**: a unit stays with the worker that runs it while that worker is within its
//!   fair share, so a rebalance moves only what must move;
//! - **cooperative**: a unit moves from one live worker to another in two steps. In the first
//!   rebalance it is taken from its owner and given to nobody; the owner stops it (its final
//!   segments and manifests written) and rejoins, and in that second rebalance the unit is
//!   free and goes to its new worker. Two workers therefore never run the same partition,
//!   not even during a rebalance. A unit whose worker left the group (or died and was dropped
//!   after the session timeout) is free at once.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The protocol type of Ferry's worker groups (Kafka Connect's workers use `connect`).
pub const PROTOCOL_TYPE: &str = "ferry-worker";
/// The assignor's name.
pub const ASSIGNOR: &str = "ferry-sticky";

/// A piece of a pipeline one worker runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Unit {
    /// The pipeline.
    pub pipeline: String,
    /// The topic-partition, or `None` for a pipeline run whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<(String, i32)>,
}

impl Unit {
    /// A whole pipeline.
    pub fn whole(pipeline: &str) -> Self {
        Unit {
            pipeline: pipeline.to_string(),
            partition: None,
        }
    }

    /// One partition of a pipeline.
    pub fn partition(pipeline: &str, topic: &str, partition: i32) -> Self {
        Unit {
            pipeline: pipeline.to_string(),
            partition: Some((topic.to_string(), partition)),
        }
    }
}

/// What a worker tells the group when it joins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMetadata {
    /// How the worker's REST API is reached.
    pub url: String,
    /// The units it runs right now (still stopping ones included).
    pub owned: Vec<Unit>,
}

/// One member as every worker learns it from the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The coordinator's member id.
    pub id: String,
    /// How its REST API is reached.
    pub url: String,
    /// The units it was given.
    pub units: Vec<Unit>,
}

/// What the leader sends each worker: the whole plan, so any worker can answer
/// `GET /workers` and status requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Every member and its units, by member id.
    pub members: Vec<MemberView>,
    /// The leader's member id.
    pub leader: String,
    /// Units taken from their owner in this round and given to nobody yet; their owners
    /// rejoin once they stopped them.
    pub revoked: Vec<Unit>,
}

impl Plan {
    /// The units of member `id`.
    pub fn units_of(&self, id: &str) -> Vec<Unit> {
        self.members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.units.clone())
            .unwrap_or_default()
    }
}

/// Divides `units` over `members` (member id → what it says it runs). Pure, so it is unit
/// tested on its own.
pub fn plan(members: &BTreeMap<String, MemberMetadata>, units: &BTreeSet<Unit>) -> Plan {
    let mut out: BTreeMap<String, Vec<Unit>> =
        members.keys().map(|m| (m.clone(), Vec::new())).collect();
    if members.is_empty() {
        return Plan::default();
    }
    let n = members.len();
    let quota_low = units.len() / n;
    let extra = units.len() % n;
    // Members that may hold one more than `quota_low`: the first `extra` by current load
    // (most loaded first, so fewer units move), then by id.
    let mut by_load: Vec<&String> = members.keys().collect();
    by_load.sort_by_key(|m| {
        let owned = members[*m]
            .owned
            .iter()
            .filter(|u| units.contains(*u))
            .count();
        (std::cmp::Reverse(owned), (*m).clone())
    });
    let quota: BTreeMap<&String, usize> = by_load
        .iter()
        .enumerate()
        .map(|(i, m)| (*m, quota_low + usize::from(i < extra)))
        .collect();

    // Who says it runs what. A unit two members claim (one of them is about to learn it
    // lost it) is revoked from both, so that neither runs it while the other does.
    let mut claims: BTreeMap<&Unit, Vec<&String>> = BTreeMap::new();
    for (m, meta) in members {
        let owned: BTreeSet<&Unit> = meta.owned.iter().filter(|u| units.contains(*u)).collect();
        for u in owned {
            claims.entry(u).or_default().push(m);
        }
    }
    // Keep what each member runs, up to its quota; the rest of what it runs is revoked.
    let mut revoked = Vec::new();
    for (u, owners) in &claims {
        match owners.as_slice() {
            [m] => match out.get_mut(*m) {
                Some(kept) if kept.len() < quota[*m] => kept.push((*u).clone()),
                _ => revoked.push((*u).clone()),
            },
            _ => revoked.push((*u).clone()),
        }
    }
    // Free units (new, or their owner is gone) go to the least loaded member below quota.
    for u in units {
        if claims.contains_key(u) {
            continue;
        }
        let target = members
            .keys()
            .filter(|m| out[*m].len() < quota[*m])
            .min_by_key(|m| (out[*m].len(), (*m).clone()));
        if let Some(m) = target {
            if let Some(list) = out.get_mut(m) {
                list.push(u.clone());
            }
        }
    }
    let members = out
        .into_iter()
        .map(|(id, mut units)| {
            units.sort();
            MemberView {
                url: members[&id].url.clone(),
                id,
                units,
            }
        })
        .collect();
    revoked.sort();
    Plan {
        members,
        leader: String::new(),
        revoked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(pipeline: &str, n: i32) -> BTreeSet<Unit> {
        (0..n).map(|p| Unit::partition(pipeline, "t", p)).collect()
    }

    fn member(url: &str, owned: &[Unit]) -> MemberMetadata {
        MemberMetadata {
            url: url.into(),
            owned: owned.to_vec(),
        }
    }

    fn count(p: &Plan, id: &str) -> usize {
        p.units_of(id).len()
    }

    #[test]
    fn a_fresh_group_gets_an_even_split_of_every_unit() {
        let all = units("p", 12);
        let members = BTreeMap::from([
            ("a".to_string(), member("u-a", &[])),
            ("b".to_string(), member("u-b", &[])),
            ("c".to_string(), member("u-c", &[])),
        ]);
        let p = plan(&members, &all);
        assert_eq!((count(&p, "a"), count(&p, "b"), count(&p, "c")), (4, 4, 4));
        let given: BTreeSet<Unit> = p.members.iter().flat_map(|m| m.units.clone()).collect();
        assert_eq!(given, all);
        assert!(p.revoked.is_empty());
    }

    #[test]
    fn a_dead_workers_units_go_to_the_others_and_nothing_else_moves() {
        let all = units("p", 12);
        let first = plan(
            &BTreeMap::from([
                ("a".to_string(), member("u-a", &[])),
                ("b".to_string(), member("u-b", &[])),
                ("c".to_string(), member("u-c", &[])),
            ]),
            &all,
        );
        // c died: a and b rejoin with what they run.
        let members = BTreeMap::from([
            ("a".to_string(), member("u-a", &first.units_of("a"))),
            ("b".to_string(), member("u-b", &first.units_of("b"))),
        ]);
        let second = plan(&members, &all);
        assert_eq!((count(&second, "a"), count(&second, "b")), (6, 6));
        for id in ["a", "b"] {
            for u in first.units_of(id) {
                assert!(second.units_of(id).contains(&u), "{id} kept {u:?}");
            }
        }
        assert!(
            second.revoked.is_empty(),
            "a dead worker's units are free at once"
        );
    }

    #[test]
    fn a_new_worker_gets_units_in_two_steps() {
        let all = units("p", 12);
        let half: Vec<Unit> = all.iter().take(6).cloned().collect();
        let rest: Vec<Unit> = all.iter().skip(6).cloned().collect();
        let members = BTreeMap::from([
            ("a".to_string(), member("u-a", &half)),
            ("b".to_string(), member("u-b", &rest)),
            ("c".to_string(), member("u-c", &[])),
        ]);
        // Step 1: a and b give up two each; nobody gets them yet.
        let step1 = plan(&members, &all);
        assert_eq!(step1.revoked.len(), 4);
        assert_eq!(count(&step1, "c"), 0);
        assert_eq!((count(&step1, "a"), count(&step1, "b")), (4, 4));
        // Step 2: a and b stopped them and rejoin with what they still run.
        let members = BTreeMap::from([
            ("a".to_string(), member("u-a", &step1.units_of("a"))),
            ("b".to_string(), member("u-b", &step1.units_of("b"))),
            ("c".to_string(), member("u-c", &[])),
        ]);
        let step2 = plan(&members, &all);
        assert!(step2.revoked.is_empty());
        assert_eq!(step2.units_of("c").len(), 4);
        assert_eq!(step2.units_of("c"), step1.revoked);
    }

    #[test]
    fn units_of_a_deleted_pipeline_are_dropped_and_whole_pipelines_count_as_one() {
        let mut all = units("p", 2);
        all.insert(Unit::whole("restore"));
        let members = BTreeMap::from([
            ("a".to_string(), member("u-a", &[Unit::whole("gone")])),
            ("b".to_string(), member("u-b", &[])),
        ]);
        let p = plan(&members, &all);
        let given: BTreeSet<Unit> = p.members.iter().flat_map(|m| m.units.clone()).collect();
        assert_eq!(given, all);
        assert!(p.revoked.is_empty());
        assert_eq!(count(&p, "a") + count(&p, "b"), 3);
        assert!(count(&p, "a").abs_diff(count(&p, "b")) <= 1);
    }

    #[test]
    fn a_unit_two_members_claim_is_revoked_from_both() {
        let all = units("p", 1);
        let u: Vec<Unit> = all.iter().cloned().collect();
        let members = BTreeMap::from([
            ("a".to_string(), member("u-a", &u)),
            ("b".to_string(), member("u-b", &u)),
        ]);
        let p = plan(&members, &all);
        assert_eq!(count(&p, "a") + count(&p, "b"), 0);
        assert_eq!(p.revoked, u);
    }
}
