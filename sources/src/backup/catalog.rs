//! What a backup holds: its descriptor, the object listing, manifests, topic documents and
//! consumer-group snapshots. Shared by the `backup` source, `ferry ls` and `ferry verify`.
//!
//! Every object name comes from [`ferry_formats::layout`]; nothing here derives key names.

use ferry_core::{Error, Result, Storage};
use ferry_formats::layout::{
    self, Descriptor, GroupsDocument, Inventory, SegmentManifest, TopicDocument,
};
use futures::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet};

/// How many objects are fetched at once when reading many small documents.
const READ_CONCURRENCY: usize = 16;
/// How many partitions' manifests are read at once.
const PARTITION_CONCURRENCY: usize = 8;

/// A backup opened for reading: its descriptor and an inventory of `topics/`.
#[derive(Debug, Clone)]
pub struct Catalog {
    storage: Storage,
    /// The backup descriptor (`ferry.json`).
    pub descriptor: Descriptor,
    /// Manifests, segments and topic documents found under `topics/`.
    pub inventory: Inventory,
    /// Times of the consumer-group snapshots under `groups/`, oldest first.
    pub group_snapshots: Vec<i64>,
    /// `(topic, partition, first_offset)` of the markers under `pending/`: templated
    /// segments (sink `path:`) being written, or left by an interrupted write.
    pub pending: Vec<(String, i32, i64)>,
}

/// Parses a JSON document read from storage; errors name the object.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    storage: &Storage,
    key: &str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Corrupt(format!("{storage}/{key}: not a valid document: {e}")))
}

/// The time of a groups snapshot key, when `key` is one ([`layout::groups_key`] round-trips).
fn parse_groups_key(key: &str) -> Option<i64> {
    let stem = key.strip_prefix("groups/")?.strip_suffix(".json")?;
    let t: i64 = stem.parse().ok()?;
    (layout::groups_key(t) == key).then_some(t)
}

impl Catalog {
    /// Opens the backup at `storage`: reads `ferry.json` (refusing a newer layout) and lists
    /// `topics/` and `groups/`.
    pub async fn open(storage: Storage) -> Result<Catalog> {
        let descriptor = match storage.read_opt(layout::DESCRIPTOR).await? {
            Some(b) => parse_json::<Descriptor>(&storage, layout::DESCRIPTOR, &b)?,
            None => {
                return Err(Error::config(format!(
                    "no Ferry backup at {storage}: {storage}/{} not found",
                    layout::DESCRIPTOR
                )))
            }
        };
        if descriptor.layout_version > layout::LAYOUT_VERSION {
            return Err(Error::config(format!(
                "the backup at {storage} has layout version {}, newer than the {} this Ferry reads \
                 (written by {}): upgrade Ferry to read it",
                descriptor.layout_version,
                layout::LAYOUT_VERSION,
                descriptor.created_by
            )));
        }
        let keys = storage.list("topics/").await?;
        let inventory = Inventory::from_keys(&keys);
        let mut group_snapshots: Vec<i64> = storage
            .list("groups/")
            .await?
            .iter()
            .filter_map(|k| parse_groups_key(k))
            .collect();
        group_snapshots.sort_unstable();
        let pending = storage
            .list(layout::PENDING_PREFIX)
            .await?
            .iter()
            .filter_map(|k| layout::parse_pending_key(k))
            .collect();
        Ok(Catalog {
            storage,
            descriptor,
            inventory,
            group_snapshots,
            pending,
        })
    }

    /// The storage the backup lives in.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Every topic of the backup (with segments or with a topic document), sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut set: BTreeSet<String> = self
            .inventory
            .topics_with_document
            .iter()
            .cloned()
            .collect();
        set.extend(self.inventory.manifests.keys().map(|(t, _)| t.clone()));
        set.into_iter().collect()
    }

    /// Partitions of `topic` that have at least one complete segment, sorted.
    pub fn partitions(&self, topic: &str) -> Vec<i32> {
        self.inventory
            .manifests
            .keys()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| *p)
            .collect()
    }

    /// Segments without a manifest (incomplete writes): `(topic, partition, first, ext)`.
    pub fn orphans(&self) -> Vec<(String, i32, i64, String)> {
        self.inventory.orphans()
    }

    /// Pending markers without a manifest: templated segments whose write did not finish
    /// (restores ignore them; the sink removes them on its next start).
    pub fn incomplete_pending(&self) -> Vec<(String, i32, i64)> {
        self.pending
            .iter()
            .filter(|(t, p, f)| {
                self.inventory
                    .manifests
                    .get(&(t.clone(), *p))
                    .is_none_or(|m| m.binary_search(f).is_err())
            })
            .cloned()
            .collect()
    }

    /// Reads one manifest and checks that it describes the segment its name says.
    pub async fn read_manifest(
        &self,
        topic: &str,
        partition: i32,
        first_offset: i64,
    ) -> Result<SegmentManifest> {
        let key = layout::manifest_key(topic, partition, first_offset);
        let bytes = self.storage.read(&key).await?;
        let m: SegmentManifest = parse_json(&self.storage, &key, &bytes)?;
        if m.topic != topic || m.partition != partition || m.first_offset != first_offset {
            return Err(Error::Corrupt(format!(
                "{}/{key}: manifest describes {}/{} from offset {}, not what its name says",
                self.storage, m.topic, m.partition, m.first_offset
            )));
        }
        if m.next_offset < m.first_offset {
            return Err(Error::Corrupt(format!(
                "{}/{key}: next_offset {} is below first_offset {}",
                self.storage, m.next_offset, m.first_offset
            )));
        }
        Ok(m)
    }

    /// Every manifest of a partition, sorted by first offset (orphan segments ignored).
    pub async fn manifests(&self, topic: &str, partition: i32) -> Result<Vec<SegmentManifest>> {
        let firsts = self
            .inventory
            .manifests
            .get(&(topic.to_string(), partition))
            .cloned()
            .unwrap_or_default();
        let mut out: Vec<SegmentManifest> = futures::stream::iter(firsts)
            .map(|f| self.read_manifest(topic, partition, f))
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        out.sort_by_key(|m| m.first_offset);
        Ok(out)
    }

    /// A topic's document (`topics/<topic>/topic.json`), if the backup has one.
    pub async fn topic_document(&self, topic: &str) -> Result<Option<TopicDocument>> {
        let key = layout::topic_key(topic);
        match self.storage.read_opt(&key).await? {
            Some(b) => parse_json(&self.storage, &key, &b).map(Some),
            None => Ok(None),
        }
    }

    /// Reads the groups snapshot taken at `taken_at_ms` (one of [`Catalog::group_snapshots`]).
    pub async fn groups_document(&self, taken_at_ms: i64) -> Result<GroupsDocument> {
        let key = layout::groups_key(taken_at_ms);
        let bytes = self.storage.read(&key).await?;
        parse_json(&self.storage, &key, &bytes)
    }

    /// The latest groups snapshot taken at or before `until` (the latest overall without it).
    pub async fn groups_at(&self, until: Option<i64>) -> Result<Option<GroupsDocument>> {
        let t = self
            .group_snapshots
            .iter()
            .rev()
            .find(|t| until.is_none_or(|u| **t <= u));
        match t {
            Some(t) => self.groups_document(*t).await.map(Some),
            None => Ok(None),
        }
    }

    /// Every groups snapshot, oldest first, read a few at a time.
    pub async fn all_groups_documents(&self) -> Result<Vec<GroupsDocument>> {
        futures::stream::iter(self.group_snapshots.clone())
            .map(|t| self.groups_document(t))
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await
    }

    /// The manifests of several partitions, read a few partitions at a time, in the order
    /// asked.
    pub async fn manifests_of(
        &self,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<((String, i32), Vec<SegmentManifest>)>> {
        futures::stream::iter(partitions)
            .map(|(t, p)| async move {
                let m = self.manifests(&t, p).await?;
                Ok::<_, Error>(((t, p), m))
            })
            .buffered(PARTITION_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Every manifest of every partition, keyed by (topic, partition).
    pub async fn all_manifests(&self) -> Result<BTreeMap<(String, i32), Vec<SegmentManifest>>> {
        let keys: Vec<(String, i32)> = self.inventory.manifests.keys().cloned().collect();
        Ok(self.manifests_of(keys).await?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keys_round_trip() {
        assert_eq!(parse_groups_key(&layout::groups_key(1234)), Some(1234));
        assert_eq!(parse_groups_key("groups/12.json"), None);
        assert_eq!(parse_groups_key("groups/x.json"), None);
    }
}
