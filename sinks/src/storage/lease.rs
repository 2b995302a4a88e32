//! One writer per backup location: a lease in the location, `lease/<generation:020>.json`.
//!
//! A writer takes the lease when it opens: generation 0 when there is none, else the next
//! generation after the latest one, but only when that one has expired (its owner stopped
//! renewing it: it crashed) or was released. Each generation is written create-only, so of
//! two writers racing for the same generation exactly one wins. While it runs, the owner
//! renews its lease (a new heartbeat and expiry) every third of the lease time, checking
//! first that the lease is still its own; when it is not (a paused owner whose lease
//! expired and was taken over) the sink stops before it commits anything more. `close`
//! releases the lease so the next run need not wait for it to expire; a lease whose owner
//! ran on this host and is gone (killed, crashed) is taken over at once.

use ferry_core::{Error, Result, Storage};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// Folder of the lease generations.
pub const LEASE_PREFIX: &str = "lease/";

/// The content of a lease generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseDocument {
    /// Who holds it: unique per process and run.
    pub owner: String,
    /// Host name of the owner.
    pub host: String,
    /// Process id of the owner.
    pub pid: u32,
    /// When the owner last renewed it (ms since the epoch).
    pub heartbeat_ms: i64,
    /// When it expires unless renewed (ms since the epoch); 0 once released.
    pub expires_ms: i64,
}

impl LeaseDocument {
    fn describe(&self, now_ms: i64) -> String {
        format!(
            "owner {} (host {}, pid {}), last heartbeat {}s ago, lease expires in {}s",
            self.owner,
            self.host,
            self.pid,
            (now_ms - self.heartbeat_ms).max(0) / 1000,
            (self.expires_ms - now_ms).max(0) / 1000
        )
    }
}

/// Key of a lease generation.
pub fn lease_key(generation: u64) -> String {
    format!("{LEASE_PREFIX}{generation:020}.json")
}

fn parse_generation(key: &str) -> Option<u64> {
    key.strip_prefix(LEASE_PREFIX)?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

fn now_ms() -> i64 {
    ferry_formats::layout::now_ms()
}

/// This process's identity: `host/pid/start-ms/random`.
fn new_owner(host: &str) -> String {
    format!(
        "{host}/{}/{}/{:08x}",
        std::process::id(),
        now_ms(),
        rand::random::<u32>()
    )
}

/// Whether a process of this host is alive. Where `/proc` cannot tell (not Linux), every
/// process counts as alive, so only expiry frees its lease.
fn process_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// A lease held by this process; renewed in the background until released.
pub struct Lease {
    storage: Storage,
    key: String,
    doc: LeaseDocument,
    /// Set by the renewal task when the lease was lost (or could not be renewed in time).
    lost: Arc<Mutex<Option<String>>>,
    renewal: tokio::task::JoinHandle<()>,
    /// Given up with [`Lease::release`].
    released: bool,
}

/// Leases this process held and dropped without releasing them (their sink failed, e.g. the
/// storage went away): no one renews them any more, so a later run in this same process (a
/// continuous pipeline restarted after a storage outage) may take them over at once, as it
/// would the lease of a crashed process.
static ABANDONED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

fn abandoned(owner: &str) -> bool {
    ABANDONED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(owner)
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
        if !self.released {
            ABANDONED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(self.doc.owner.clone());
        }
    }
}

impl Lease {
    /// Takes the lease of `storage` for `ttl`, or fails naming the writer that holds it.
    pub async fn acquire(storage: &Storage, ttl: Duration) -> Result<Lease> {
        let host = host_name();
        let owner = new_owner(&host);
        let ttl_ms = ttl.as_millis() as i64;
        let generations: Vec<u64> = storage
            .list(LEASE_PREFIX)
            .await?
            .iter()
            .filter_map(|k| parse_generation(k))
            .collect();
        let latest = generations.iter().max().copied();
        let next = match latest {
            None => 0,
            Some(g) => {
                let key = lease_key(g);
                if let Some(held) = read_lease(storage, &key).await? {
                    let now = now_ms();
                    let owner_died_here = held.host == host && !process_alive(held.pid);
                    if owner_died_here {
                        tracing::warn!(lease = %key, owner = %held.owner, "the lease's owner ran on this host and is gone (it crashed): taking over");
                    }
                    let owner_died_here = owner_died_here
                        || (held.host == host
                            && held.pid == std::process::id()
                            && abandoned(&held.owner));
                    if held.expires_ms > now && !owner_died_here {
                        return Err(Error::refused(format!(
                            "{storage}/{key}: another Ferry is writing to this backup location: {}; stop it first, or wait for its lease to expire if it crashed",
                            held.describe(now)
                        )));
                    }
                }
                g + 1
            }
        };
        let now = now_ms();
        let doc = LeaseDocument {
            owner,
            host,
            pid: std::process::id(),
            heartbeat_ms: now,
            expires_ms: now + ttl_ms,
        };
        let key = lease_key(next);
        if !storage.write_new(&key, encode(&doc)?).await? {
            let now = now_ms();
            let holder = read_lease(storage, &key)
                .await?
                .map_or_else(|| "unknown".to_string(), |h| h.describe(now));
            return Err(Error::refused(format!(
                "{storage}/{key}: another Ferry took this backup location's lease at the same moment: {holder}"
            )));
        }
        // Older generations are history now.
        for g in generations.into_iter().filter(|g| *g < next) {
            if let Err(e) = storage.delete(&lease_key(g)).await {
                tracing::debug!(error = %e, "could not remove an old lease generation");
            }
        }
        tracing::info!(lease = %key, owner = %doc.owner, "took the backup location's lease");
        let lost = Arc::new(Mutex::new(None));
        let renewal = tokio::spawn(renew_loop(
            storage.clone(),
            key.clone(),
            doc.clone(),
            ttl,
            lost.clone(),
        ));
        Ok(Lease {
            storage: storage.clone(),
            key,
            doc,
            lost,
            renewal,
            released: false,
        })
    }

    /// An error when the lease was lost: nothing more may be committed.
    pub fn check(&self) -> Result<()> {
        match self.lost.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            None => Ok(()),
            Some(why) => Err(Error::refused(format!(
                "{}/{}: this run lost the backup location's lease ({why}); stopping before committing more",
                self.storage, self.key
            ))),
        }
    }

    /// Gives the lease up (it expires at once) so the next run can take it.
    pub async fn release(mut self) -> Result<()> {
        self.renewal.abort();
        let mut doc = self.doc.clone();
        doc.heartbeat_ms = now_ms();
        doc.expires_ms = 0;
        if self.still_ours().await? {
            self.storage.write(&self.key, encode(&doc)?).await?;
        }
        self.released = true;
        Ok(())
    }

    async fn still_ours(&self) -> Result<bool> {
        Ok(read_lease(&self.storage, &self.key)
            .await?
            .is_some_and(|d| d.owner == self.doc.owner))
    }
}

fn encode(doc: &LeaseDocument) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(doc).map_err(|e| Error::internal(format!("encoding the lease: {e}")))
}

async fn read_lease(storage: &Storage, key: &str) -> Result<Option<LeaseDocument>> {
    let Some(bytes) = storage.read_opt(key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::Corrupt(format!(
            "{storage}/{key}: not a Ferry lease ({e}); if no Ferry writes to this location, delete it"
        ))
    })
}

/// Renews the lease every third of `ttl` until aborted; notes in `lost` why it stopped
/// being ours (taken over, or not renewed before it expired).
async fn renew_loop(
    storage: Storage,
    key: String,
    mut doc: LeaseDocument,
    ttl: Duration,
    lost: Arc<Mutex<Option<String>>>,
) {
    let period = ttl / 3;
    loop {
        tokio::time::sleep(period).await;
        let why = match read_lease(&storage, &key).await {
            Ok(Some(held)) if held.owner == doc.owner => {
                let now = now_ms();
                if now >= doc.expires_ms {
                    Some("it expired before it could be renewed".to_string())
                } else {
                    doc.heartbeat_ms = now;
                    doc.expires_ms = now + ttl.as_millis() as i64;
                    match encode(&doc) {
                        Ok(bytes) => match storage.write(&key, bytes).await {
                            Ok(()) => None,
                            Err(e) => {
                                tracing::warn!(lease = %key, error = %e, "could not renew the lease; retrying");
                                None
                            }
                        },
                        Err(e) => Some(e.to_string()),
                    }
                }
            }
            Ok(Some(held)) => Some(format!("now held by {}", held.owner)),
            Ok(None) => Some("its object is gone".to_string()),
            Err(e) => {
                tracing::warn!(lease = %key, error = %e, "could not read the lease; retrying");
                (now_ms() >= doc.expires_ms)
                    .then(|| "it expired before it could be renewed".to_string())
            }
        };
        if let Some(why) = why {
            tracing::error!(lease = %key, reason = %why, "lost the backup location's lease");
            *lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(name: &str) -> Storage {
        Storage::from_uri(&format!("memory://lease-{name}-{}", std::process::id()))
            .expect("memory storage")
    }

    #[tokio::test]
    async fn a_second_writer_is_refused_until_the_first_releases() {
        let s = memory("refuse");
        let first = Lease::acquire(&s, Duration::from_secs(60)).await.unwrap();
        let err = Lease::acquire(&s, Duration::from_secs(60))
            .await
            .err()
            .expect("a second writer is refused")
            .to_string();
        assert!(err.contains(&first.doc.owner), "{err}");
        assert!(err.contains("another Ferry is writing"), "{err}");
        first.release().await.unwrap();
        let second = Lease::acquire(&s, Duration::from_secs(60)).await.unwrap();
        assert_eq!(second.key, lease_key(1));
        assert_eq!(s.list(LEASE_PREFIX).await.unwrap(), vec![lease_key(1)]);
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_its_owner_learns_it() {
        let s = memory("expire");
        let ttl = Duration::from_millis(300);
        let crashed = Lease::acquire(&s, ttl).await.unwrap();
        // The owner stops renewing (as a killed process would).
        crashed.renewal.abort();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let next = Lease::acquire(&s, ttl).await.unwrap();
        assert_eq!(next.key, lease_key(1));
        // A paused owner that comes back finds it is no longer the owner.
        let stale = Lease {
            storage: s.clone(),
            key: lease_key(1),
            doc: crashed.doc.clone(),
            lost: Arc::new(Mutex::new(None)),
            renewal: tokio::spawn(renew_loop(
                s.clone(),
                lease_key(1),
                crashed.doc.clone(),
                ttl,
                Arc::new(Mutex::new(None)),
            )),
            released: true,
        };
        assert!(!stale.still_ours().await.unwrap());
        next.check().unwrap();
    }

    #[tokio::test]
    async fn a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once() {
        let s = memory("dead");
        let mut held = Lease::acquire(&s, Duration::from_secs(60)).await.unwrap();
        held.renewal.abort();
        // Pretend the owner was another process of this host that is gone: no process
        // has pid u32::MAX.
        held.doc.pid = u32::MAX;
        s.write(&held.key, encode(&held.doc).unwrap())
            .await
            .unwrap();
        let next = Lease::acquire(&s, Duration::from_secs(60)).await.unwrap();
        assert_eq!(next.key, lease_key(1));
        // A live owner (this process) is not taken over.
        let err = Lease::acquire(&s, Duration::from_secs(60))
            .await
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
    }

    #[tokio::test]
    async fn renewal_keeps_the_lease_alive() {
        let s = memory("renew");
        let ttl = Duration::from_millis(300);
        let held = Lease::acquire(&s, ttl).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        held.check().unwrap();
        assert!(
            Lease::acquire(&s, ttl).await.is_err(),
            "a renewed lease is not taken over"
        );
    }
}
