//! The group fence: a task checks, before it commits a segment and its manifest, that its
//! worker is still a member of the group in the generation that gave it its partitions.

use async_trait::async_trait;
use ferry_core::{Error, Fence, Result};
use ferry_kafka::{Client, Heartbeat};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Membership as the tasks see it; the membership loop updates it.
pub struct GroupFence {
    client: Client,
    group: String,
    state: Mutex<FenceState>,
    /// A heartbeat this recent proves membership without asking again.
    fresh_for: Duration,
    /// After this long without any answer the coordinator has surely dropped us.
    session: Duration,
}

#[derive(Debug, Clone)]
struct FenceState {
    member_id: String,
    generation: i32,
    last_ok: Instant,
    expired: bool,
}

impl GroupFence {
    /// A fence for `group` with the group's session timeout.
    pub fn new(client: Client, group: &str, session: Duration) -> Self {
        GroupFence {
            client,
            group: group.to_string(),
            state: Mutex::new(FenceState {
                member_id: String::new(),
                generation: -1,
                last_ok: Instant::now(),
                expired: true,
            }),
            fresh_for: session / 5,
            session,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FenceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The member joined (again): this generation is now the one tasks belong to.
    pub fn joined(&self, member_id: &str, generation: i32) {
        let mut s = self.lock();
        s.member_id = member_id.to_string();
        s.generation = generation;
        s.last_ok = Instant::now();
        s.expired = false;
    }

    /// A heartbeat of the membership loop succeeded.
    pub fn alive(&self) {
        self.lock().last_ok = Instant::now();
    }

    /// Waits (up to the session timeout) until the membership loop records a generation
    /// newer than `generation` for the same member id; `false` when it does not, or the
    /// member was dropped meanwhile.
    async fn newer_generation_of(&self, member_id: &str, generation: i32) -> bool {
        let start = Instant::now();
        while start.elapsed() < self.session {
            {
                let s = self.lock();
                if s.expired || s.member_id != member_id {
                    return false;
                }
                if s.generation > generation {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// The coordinator dropped the member: every commit fails until it joins again.
    pub fn expire(&self) {
        self.lock().expired = true;
    }
}

#[async_trait]
impl Fence for GroupFence {
    async fn check(&self) -> Result<()> {
        let s = self.lock().clone();
        let lost = || {
            Error::refused(format!(
                "this worker is no longer a member of group '{}' in generation {}: its partitions may belong to another worker now, so nothing more is committed",
                self.group, s.generation
            ))
        };
        if s.expired {
            return Err(lost());
        }
        if s.last_ok.elapsed() < self.fresh_for {
            return Ok(());
        }
        // The last proof is old (this process may have been paused): ask the coordinator.
        match self
            .client
            .heartbeat_as(&self.group, s.generation, &s.member_id)
            .await
        {
            Ok(Heartbeat::Ok) | Ok(Heartbeat::RebalanceNeeded) => {
                self.alive();
                Ok(())
            }
            Ok(Heartbeat::Expired) => {
                self.expire();
                Err(lost())
            }
            // The member rejoined and the coordinator has a newer generation the membership
            // loop has not recorded yet: wait for it. Same member id: nothing was taken from
            // it without its knowing (units only move after their owner gave them up).
            Ok(Heartbeat::StaleGeneration) => {
                if self.newer_generation_of(&s.member_id, s.generation).await {
                    Ok(())
                } else {
                    Err(lost())
                }
            }
            // The coordinator cannot be asked: still safe while it cannot have dropped us.
            Err(_) if s.last_ok.elapsed() < self.session => Ok(()),
            Err(e) => Err(Error::connection(
                format!("group coordinator of '{}'", self.group),
                true,
                e,
            )),
        }
    }
}
