//! Pipeline files from a folder (`--pipelines DIR`): kept in the group's config topic and
//! reloaded when they change, for GitOps and Kubernetes ConfigMaps.
//!
//! Only the group's leader writes what it finds, so several workers watching the same
//! folder do not write each change several times. The folder is polled (a ConfigMap
//! update swaps a `..data` symlink, which file-change events do not always report); names
//! starting with `.` are skipped. A file that does not pass the checks is logged (once per
//! content) and left out; a removed file's pipeline is deleted.

use crate::Shared;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const POLL: Duration = Duration::from_secs(2);

/// Follows `dir` until `stop` turns true.
pub async fn watch(dir: PathBuf, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut reported: BTreeSet<(PathBuf, String)> = BTreeSet::new();
    loop {
        if is_leader(&shared) {
            sync_once(&dir, &shared, &mut reported).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

fn is_leader(shared: &Shared) -> bool {
    let plan = shared.plan();
    !plan.leader.is_empty() && plan.leader == shared.url
}

/// The pipeline files of `dir` and their text.
fn read_dir(dir: &Path) -> std::io::Result<BTreeMap<PathBuf, String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        // Follows symlinks (ConfigMap files are links into `..data`).
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                out.insert(path, text);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read pipeline file")
            }
        }
    }
    Ok(out)
}

/// Writes new and changed files to the group and deletes pipelines whose file is gone.
pub async fn sync_once(dir: &Path, shared: &Shared, reported: &mut BTreeSet<(PathBuf, String)>) {
    let files = match read_dir(dir) {
        Ok(f) => f,
        Err(e) => {
            if reported.insert((dir.to_path_buf(), e.to_string())) {
                tracing::error!(dir = %dir.display(), error = %e, "cannot read the pipelines folder");
            }
            return;
        }
    };
    let defs = shared.store.all();
    let mut from_files = BTreeSet::new();
    for (path, text) in &files {
        let file = path.display().to_string();
        let name = match pipeline_name(text, &file) {
            Ok(n) => n,
            Err(e) => {
                if reported.insert((path.clone(), text.clone())) {
                    tracing::error!(file = %file, error = %e, "pipeline file not loaded");
                }
                continue;
            }
        };
        from_files.insert(name.clone());
        if defs.get(&name).is_some_and(|d| d.config == *text) {
            continue;
        }
        if let Err(e) = crate::api::check_pipeline(shared, &name, text) {
            if reported.insert((path.clone(), text.clone())) {
                tracing::error!(file = %file, error = %e, "pipeline file not loaded");
            }
            continue;
        }
        match shared.store.put(&name, text, Some(file.clone())).await {
            Ok(created) => {
                tracing::info!(file = %file, pipeline = %name, created, "pipeline loaded from file")
            }
            Err(e) => {
                tracing::warn!(file = %file, error = %ferry_core::error_chain(&e), "cannot store pipeline")
            }
        }
    }
    let dir_prefix = dir.display().to_string();
    for (name, def) in &defs {
        let from_this_dir = def
            .file
            .as_ref()
            .is_some_and(|f| f.starts_with(&dir_prefix));
        if from_this_dir && !from_files.contains(name) {
            match shared.store.delete(name).await {
                Ok(_) => {
                    tracing::info!(pipeline = %name, "pipeline file removed: pipeline deleted")
                }
                Err(e) => {
                    tracing::warn!(pipeline = %name, error = %ferry_core::error_chain(&e), "cannot delete pipeline")
                }
            }
        }
    }
}

/// The `name:` of a pipeline text (`${VAR}` interpolated).
pub(crate) fn pipeline_name(text: &str, file: &str) -> ferry_core::Result<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        name: String,
    }
    let interpolated = ferry_core::interpolate::interpolate(text, file)?;
    let named: Named = ferry_core::parse_yaml(&interpolated.text, file)?;
    Ok(named.name)
}
