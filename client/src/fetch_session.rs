//! Incremental fetch sessions (KIP-227).
//!
//! Without a session every Fetch names every partition a reader follows, and the broker
//! answers for every one of them: with thousands of partitions most of each request and
//! response is the same list again. With a session (Fetch v7+) the first request is a full
//! one (session id 0, epoch 0) and the broker answers with a session id; later requests
//! (epochs 1, 2, …) name only the partitions that are new or whose fetch offset or byte
//! limit changed, list the ones to drop in `forgotten_topics_data`, and the broker answers
//! only for partitions with data, a moved watermark or an error.
//!
//! [`FetchSessions`] keeps one session per broker for one reader (a session belongs to one
//! sequence of requests: two readers sharing a [`crate::Client`] each need their own).
//! Whatever goes wrong — FETCH_SESSION_ID_NOT_FOUND (the broker evicted it),
//! INVALID_FETCH_SESSION_EPOCH, a failed request whose effect on the broker is unknown —
//! the next request is a full one, which also closes the old session on the broker.
//! Brokers older than Fetch v7, or that decline to create a session (their cache is full),
//! get full requests every time, as without sessions.

use crate::client::{FetchRequestPartition, FetchedPartition};
use kafka_protocol::messages::fetch_request::ForgottenTopic;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Counters of one [`FetchSessions`]: how its fetches went out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchSessionStats {
    /// Full requests in a session (the first of a session, and after every reset).
    pub full: u64,
    /// Incremental requests (only changed partitions named).
    pub incremental: u64,
    /// Requests without a session (broker older than Fetch v7, or retries).
    pub sessionless: u64,
    /// Sessions the broker no longer knew or refused (FETCH_SESSION_ID_NOT_FOUND,
    /// INVALID_FETCH_SESSION_EPOCH, FETCH_SESSION_TOPIC_ID_ERROR), each followed by a full
    /// request.
    pub resets: u64,
    /// Partitions named in requests, all kinds together (what sessions save shows here).
    pub partitions_sent: u64,
}

#[derive(Default)]
struct Counters {
    full: AtomicU64,
    incremental: AtomicU64,
    sessionless: AtomicU64,
    resets: AtomicU64,
    partitions_sent: AtomicU64,
}

/// One reader's fetch sessions, one per broker. Cheap to clone: clones share the sessions
/// (so a fetch running in a spawned task continues the same session).
#[derive(Clone, Default)]
pub struct FetchSessions {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Session by broker id. The async mutex is held for a whole request: epochs must reach
    /// the broker in order, one request at a time.
    brokers: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<BrokerSession>>>>,
    counters: Counters,
}

impl std::fmt::Debug for FetchSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchSessions")
            .field("stats", &self.stats())
            .finish()
    }
}

impl FetchSessions {
    /// No sessions yet: the first fetch to each broker opens one.
    pub fn new() -> Self {
        FetchSessions::default()
    }

    /// How the fetches of these sessions went out so far.
    pub fn stats(&self) -> FetchSessionStats {
        let c = &self.inner.counters;
        FetchSessionStats {
            full: c.full.load(Ordering::Relaxed),
            incremental: c.incremental.load(Ordering::Relaxed),
            sessionless: c.sessionless.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            partitions_sent: c.partitions_sent.load(Ordering::Relaxed),
        }
    }

    /// The session with `broker`.
    pub(crate) fn broker(&self, broker: i32) -> Arc<tokio::sync::Mutex<BrokerSession>> {
        let mut map = self.inner.brokers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(broker).or_default().clone()
    }

    pub(crate) fn count(&self, kind: RequestKind, partitions: usize) {
        let c = &self.inner.counters;
        let n = match kind {
            RequestKind::Full => &c.full,
            RequestKind::Incremental => &c.incremental,
            RequestKind::Sessionless => &c.sessionless,
        };
        n.fetch_add(1, Ordering::Relaxed);
        c.partitions_sent
            .fetch_add(partitions as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_reset(&self) {
        self.inner.counters.resets.fetch_add(1, Ordering::Relaxed);
    }
}

/// What kind of request a plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Full,
    Incremental,
    Sessionless,
}

/// What the broker's session holds for a partition: what was last sent, what was last
/// answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cached {
    offset: i64,
    max_bytes: i32,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

/// The session with one broker.
#[derive(Debug, Default)]
pub(crate) struct BrokerSession {
    /// Session id the broker gave (0: none).
    id: i32,
    /// Epoch of the next request: 0 asks for a full fetch (and a new session).
    epoch: i32,
    /// Fetch version the session was opened with: the broker refuses a session whose use of
    /// topic ids changes (v13+), so another version means a new session.
    version: i16,
    /// The partitions in the session.
    parts: HashMap<(String, i32), Cached>,
    /// Topic ids the partitions were added with (forgotten topics are named by id from v13).
    topic_ids: HashMap<String, Uuid>,
}

/// The next request of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub kind: RequestKind,
    pub session_id: i32,
    pub epoch: i32,
    /// Partitions to name in the request (all of them unless incremental).
    pub send: Vec<FetchRequestPartition>,
    /// Partitions to drop from the session.
    pub forget: Vec<(String, i32)>,
}

impl BrokerSession {
    /// The next request for `parts` at Fetch `version` (< 7: no session) with topic `ids`.
    pub fn plan(
        &mut self,
        parts: &[FetchRequestPartition],
        max_bytes: i32,
        version: i16,
        ids: &HashMap<String, Uuid>,
    ) -> Plan {
        if version < 7 {
            return Plan {
                kind: RequestKind::Sessionless,
                session_id: 0,
                epoch: -1,
                send: parts.to_vec(),
                forget: Vec::new(),
            };
        }
        let ids_changed = version >= 13
            && parts.iter().any(|r| {
                self.topic_ids
                    .get(&r.topic)
                    .is_some_and(|known| ids.get(&r.topic) != Some(known))
            });
        if self.epoch != 0 && (version != self.version || ids_changed) {
            self.reset();
        }
        if self.epoch == 0 {
            return Plan {
                kind: RequestKind::Full,
                session_id: self.id,
                epoch: 0,
                send: parts.to_vec(),
                forget: Vec::new(),
            };
        }
        let mut wanted: HashMap<(&str, i32), ()> = HashMap::with_capacity(parts.len());
        let mut send = Vec::new();
        for r in parts {
            wanted.insert((r.topic.as_str(), r.partition), ());
            let same = self
                .parts
                .get(&(r.topic.clone(), r.partition))
                .is_some_and(|c| c.offset == r.offset && c.max_bytes == max_bytes);
            if !same {
                send.push(r.clone());
            }
        }
        let mut forget: Vec<(String, i32)> = self
            .parts
            .keys()
            .filter(|(t, p)| !wanted.contains_key(&(t.as_str(), *p)))
            .cloned()
            .collect();
        forget.sort();
        Plan {
            kind: RequestKind::Incremental,
            session_id: self.id,
            epoch: self.epoch,
            send,
            forget,
        }
    }

    /// The next request is a full one, closing the current session (if the broker still has
    /// it) and opening a new one.
    pub fn reset(&mut self) {
        self.epoch = 0;
        self.parts.clear();
        self.topic_ids.clear();
    }

    /// `plan` was answered without a top-level error: the session as the broker now has it.
    /// `answers` are the partitions the broker answered for.
    pub fn apply(
        &mut self,
        plan: &Plan,
        version: i16,
        max_bytes: i32,
        response_session_id: i32,
        ids: &HashMap<String, Uuid>,
        answers: &HashMap<(String, i32), FetchedPartition>,
    ) {
        match plan.kind {
            RequestKind::Sessionless => return,
            RequestKind::Full => {
                self.parts.clear();
                self.topic_ids.clear();
                self.id = response_session_id;
                self.version = version;
                // A broker that declined to open a session answers 0: ask again next time.
                self.epoch = if response_session_id == 0 { 0 } else { 1 };
                if response_session_id == 0 {
                    return;
                }
            }
            RequestKind::Incremental => {
                self.epoch = next_epoch(self.epoch);
                for k in &plan.forget {
                    self.parts.remove(k);
                }
            }
        }
        for r in &plan.send {
            let e = self
                .parts
                .entry((r.topic.clone(), r.partition))
                .or_insert(Cached {
                    offset: r.offset,
                    max_bytes,
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                });
            e.offset = r.offset;
            e.max_bytes = max_bytes;
            if let Some(id) = ids.get(&r.topic) {
                self.topic_ids.insert(r.topic.clone(), *id);
            }
        }
        for (k, a) in answers {
            if let Some(c) = self.parts.get_mut(k) {
                c.high_watermark = a.high_watermark;
                c.last_stable_offset = a.last_stable_offset;
                c.log_start_offset = a.log_start_offset;
            }
        }
        if !plan.forget.is_empty() {
            let live: std::collections::HashSet<&str> =
                self.parts.keys().map(|(t, _)| t.as_str()).collect();
            self.topic_ids.retain(|t, _| live.contains(t.as_str()));
        }
    }

    /// The answer for a partition an incremental response left out: no data, nothing
    /// changed, the watermarks last answered.
    pub fn unchanged(&self, r: &FetchRequestPartition) -> FetchedPartition {
        let mut fp = FetchedPartition::empty(&r.topic, r.partition, None);
        if let Some(c) = self.parts.get(&(r.topic.clone(), r.partition)) {
            fp.high_watermark = c.high_watermark;
            fp.last_stable_offset = c.last_stable_offset;
            fp.log_start_offset = c.log_start_offset;
        }
        fp
    }

    /// `forget` as the request's forgotten topics (by id from v13, by name before).
    pub fn forgotten(&self, forget: &[(String, i32)], version: i16) -> Vec<ForgottenTopic> {
        let mut out: Vec<ForgottenTopic> = Vec::new();
        for (t, p) in forget {
            match out.last_mut() {
                Some(f) if f.topic.0.as_str() == t => f.partitions.push(*p),
                _ => {
                    let mut f = ForgottenTopic::default()
                        .with_topic(crate::client::topic_name(t))
                        .with_partitions(vec![*p]);
                    if version >= 13 {
                        f.topic_id = self.topic_ids.get(t).copied().unwrap_or_default();
                    }
                    out.push(f);
                }
            }
        }
        out
    }

    /// The session id (0: none).
    #[cfg(test)]
    pub fn id(&self) -> i32 {
        self.id
    }
}

/// Kafka's epoch sequence: 1, 2, …, i32::MAX, then 1 again (0 is reserved for full
/// requests, -1 for sessionless ones).
fn next_epoch(e: i32) -> i32 {
    if e == i32::MAX {
        1
    } else {
        e + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(t: &str, p: i32, offset: i64) -> FetchRequestPartition {
        FetchRequestPartition {
            topic: t.into(),
            partition: p,
            offset,
        }
    }

    fn answered(parts: &[FetchRequestPartition]) -> HashMap<(String, i32), FetchedPartition> {
        parts
            .iter()
            .map(|r| {
                let mut fp = FetchedPartition::empty(&r.topic, r.partition, None);
                fp.high_watermark = 100;
                ((r.topic.clone(), r.partition), fp)
            })
            .collect()
    }

    #[test]
    fn full_then_only_changed_partitions_then_forgotten_ones() {
        let ids = HashMap::new();
        let mut s = BrokerSession::default();
        let all = [part("a", 0, 0), part("a", 1, 0), part("b", 0, 5)];
        let plan = s.plan(&all, 1000, 12, &ids);
        assert_eq!(plan.kind, RequestKind::Full);
        assert_eq!((plan.session_id, plan.epoch, plan.send.len()), (0, 0, 3));
        s.apply(&plan, 12, 1000, 77, &ids, &answered(&all));
        assert_eq!(s.id(), 77);

        // a/1 moved on, the others did not.
        let next = [part("a", 0, 0), part("a", 1, 9), part("b", 0, 5)];
        let plan = s.plan(&next, 1000, 12, &ids);
        assert_eq!(plan.kind, RequestKind::Incremental);
        assert_eq!((plan.session_id, plan.epoch), (77, 1));
        assert_eq!(plan.send, vec![part("a", 1, 9)]);
        assert!(plan.forget.is_empty());
        s.apply(&plan, 12, 1000, 77, &ids, &HashMap::new());
        // Left out of the answer: unchanged, with the watermark of the full answer.
        assert_eq!(s.unchanged(&part("a", 0, 0)).high_watermark, 100);

        // b/0 is done; a byte limit change resends everything still wanted.
        let plan = s.plan(&next[..2], 1000, 12, &ids);
        assert_eq!(plan.epoch, 2);
        assert!(plan.send.is_empty());
        assert_eq!(plan.forget, vec![("b".to_string(), 0)]);
        let f = s.forgotten(&plan.forget, 12);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].topic.0.as_str(), f[0].partitions.clone()),
            ("b", vec![0])
        );
        s.apply(&plan, 12, 1000, 77, &ids, &HashMap::new());
        let plan = s.plan(&next[..2], 2000, 12, &ids);
        assert_eq!((plan.epoch, plan.send.len()), (3, 2));
    }

    #[test]
    fn a_reset_or_a_declined_session_means_a_full_request() {
        let ids = HashMap::new();
        let mut s = BrokerSession::default();
        let all = [part("a", 0, 0)];
        let plan = s.plan(&all, 1, 12, &ids);
        s.apply(&plan, 12, 1, 0, &ids, &answered(&all));
        // Declined (session id 0): full again.
        assert_eq!(s.plan(&all, 1, 12, &ids).kind, RequestKind::Full);
        let plan = s.plan(&all, 1, 12, &ids);
        s.apply(&plan, 12, 1, 5, &ids, &answered(&all));
        assert_eq!(s.plan(&all, 1, 12, &ids).kind, RequestKind::Incremental);
        s.reset();
        let plan = s.plan(&all, 1, 12, &ids);
        // Full, naming the old session so the broker closes it.
        assert_eq!(
            (plan.kind, plan.session_id, plan.epoch),
            (RequestKind::Full, 5, 0)
        );
        // Another version: a new session.
        s.apply(&plan, 12, 1, 6, &ids, &answered(&all));
        assert_eq!(s.plan(&all, 1, 13, &ids).kind, RequestKind::Full);
        // No sessions before v7.
        let plan = s.plan(&all, 1, 6, &ids);
        assert_eq!(
            (plan.kind, plan.session_id, plan.epoch),
            (RequestKind::Sessionless, 0, -1)
        );
    }

    #[test]
    fn a_new_topic_id_means_a_new_session_and_forgotten_topics_go_by_id() {
        let id1 = Uuid::from_u128(1);
        let ids = HashMap::from([("a".to_string(), id1)]);
        let mut s = BrokerSession::default();
        let all = [part("a", 0, 0), part("a", 1, 0)];
        let plan = s.plan(&all, 1, 13, &ids);
        s.apply(&plan, 13, 1, 9, &ids, &answered(&all));
        let plan = s.plan(&all[..1], 1, 13, &ids);
        let f = s.forgotten(&plan.forget, 13);
        assert_eq!(f[0].topic_id, id1);
        let recreated = HashMap::from([("a".to_string(), Uuid::from_u128(2))]);
        assert_eq!(s.plan(&all, 1, 13, &recreated).kind, RequestKind::Full);
    }

    #[test]
    fn epochs_wrap_to_one() {
        assert_eq!(next_epoch(1), 2);
        assert_eq!(next_epoch(i32::MAX), 1);
    }
}
