//! Pipeline definitions, kept in the group's config topic: key = pipeline name, value = the
//! definition (the pipeline text as written, `${VAR}` references and all, and its target
//! state); a tombstone deletes it. Backup locations added through the API live in the same
//! topic under keys `backup-location/<URI without its query>` (a pipeline name has no `/`).

use crate::topic::CompactedTopic;
use bytes::Bytes;
use ferry_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether a pipeline should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetState {
    /// Run it.
    #[default]
    Running,
    /// Keep its tasks stopped (assigned, not reading).
    Paused,
}

/// What the config topic holds for one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredDef {
    config: String,
    #[serde(default)]
    state: TargetState,
    /// The file of `pipelines_dir` it came from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    /// Bumped by `restart`, so the definition changes and the tasks restart.
    #[serde(default)]
    restarts: u64,
}

/// Key prefix of the backup locations added through the API.
pub const LOCATION_PREFIX: &str = "backup-location/";

/// What the config topic holds for an added backup location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredLocation {
    uri: String,
}

/// A pipeline as the workers know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineDef {
    /// Its name.
    pub name: String,
    /// The pipeline text as given (YAML or JSON), secrets as their `${VAR}` references.
    pub config: String,
    /// Run or pause.
    pub state: TargetState,
    /// The file of `pipelines_dir` it came from.
    pub file: Option<String>,
    /// Restarts asked for.
    pub restarts: u64,
    /// The offset of its latest write: changes with every change.
    pub version: i64,
}

/// The pipeline definitions of a group.
#[derive(Clone)]
pub struct PipelineStore {
    topic: CompactedTopic,
}

impl PipelineStore {
    /// The store on `topic`.
    pub fn new(topic: CompactedTopic) -> Self {
        PipelineStore { topic }
    }

    /// The underlying topic.
    pub fn topic(&self) -> &CompactedTopic {
        &self.topic
    }

    /// Every pipeline, by name. An entry that cannot be read is logged and left out.
    pub fn all(&self) -> BTreeMap<String, PipelineDef> {
        self.topic
            .entries()
            .into_iter()
            .filter(|(key, _)| !key.starts_with(LOCATION_PREFIX))
            .filter_map(|(name, e)| match serde_json::from_slice::<StoredDef>(&e.value) {
                Ok(d) => Some((
                    name.clone(),
                    PipelineDef {
                        name,
                        config: d.config,
                        state: d.state,
                        file: d.file,
                        restarts: d.restarts,
                        version: e.offset,
                    },
                )),
                Err(err) => {
                    tracing::warn!(pipeline = %name, error = %err, topic = %self.topic.name(), "unreadable pipeline definition; ignored");
                    None
                }
            })
            .collect()
    }

    /// One pipeline.
    pub fn get(&self, name: &str) -> Option<PipelineDef> {
        self.all().remove(name)
    }

    /// Writes a pipeline's text (keeping its state and restarts when it exists). Returns
    /// whether it was new.
    pub async fn put(&self, name: &str, config: &str, file: Option<String>) -> Result<bool> {
        let old = self.get(name);
        let def = StoredDef {
            config: config.to_string(),
            state: old.as_ref().map(|o| o.state).unwrap_or_default(),
            file,
            restarts: old.as_ref().map_or(0, |o| o.restarts),
        };
        self.write(name, &def).await?;
        Ok(old.is_none())
    }

    /// Sets a pipeline's target state; `false` when there is no such pipeline.
    pub async fn set_state(&self, name: &str, state: TargetState) -> Result<bool> {
        self.update(name, |d| d.state = state).await
    }

    /// Restarts a pipeline's tasks (a new version of the same definition).
    pub async fn restart(&self, name: &str) -> Result<bool> {
        self.update(name, |d| d.restarts += 1).await
    }

    /// Deletes a pipeline; `false` when there was none.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        if self.get(name).is_none() {
            return Ok(false);
        }
        self.topic.put(name, None).await?;
        Ok(true)
    }

    /// The backup locations added through the API, oldest first (so adding one never moves
    /// the others).
    pub fn locations(&self) -> Vec<String> {
        let mut found: Vec<(i64, String)> = self
            .topic
            .entries()
            .into_iter()
            .filter(|(key, _)| key.starts_with(LOCATION_PREFIX))
            .filter_map(|(key, e)| match serde_json::from_slice::<StoredLocation>(&e.value) {
                Ok(l) => Some((e.offset, l.uri)),
                Err(err) => {
                    tracing::warn!(key = %key, error = %err, "unreadable backup location; ignored");
                    None
                }
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, uri)| uri).collect()
    }

    /// Adds a backup location (by its URI without query: adding it again replaces it).
    pub async fn add_location(&self, uri: &str) -> Result<()> {
        let base = uri.split_once('?').map_or(uri, |(b, _)| b);
        let json = serde_json::to_vec(&StoredLocation {
            uri: uri.to_string(),
        })
        .map_err(|e| Error::internal(format!("encoding a backup location: {e}")))?;
        self.topic
            .put(&format!("{LOCATION_PREFIX}{base}"), Some(Bytes::from(json)))
            .await?;
        Ok(())
    }

    /// Removes a location added through the API (by its URI without query); `false` when
    /// none was added under it.
    pub async fn remove_location(&self, uri: &str) -> Result<bool> {
        let base = uri.split_once('?').map_or(uri, |(b, _)| b);
        let key = format!("{LOCATION_PREFIX}{base}");
        if self.topic.get(&key).is_none() {
            return Ok(false);
        }
        self.topic.put(&key, None).await?;
        Ok(true)
    }

    async fn update(&self, name: &str, change: impl FnOnce(&mut StoredDef)) -> Result<bool> {
        let Some(old) = self.get(name) else {
            return Ok(false);
        };
        let mut def = StoredDef {
            config: old.config,
            state: old.state,
            file: old.file,
            restarts: old.restarts,
        };
        change(&mut def);
        self.write(name, &def).await?;
        Ok(true)
    }

    async fn write(&self, name: &str, def: &StoredDef) -> Result<()> {
        let json = serde_json::to_vec(def)
            .map_err(|e| Error::internal(format!("encoding pipeline '{name}': {e}")))?;
        self.topic.put(name, Some(Bytes::from(json))).await?;
        Ok(())
    }
}
