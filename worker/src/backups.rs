//! Backup locations in the API: `GET /backups` lists the locations the worker was given
//! (`--backup URI`, `backups:`) and those added with `POST /backups {"uri": …}` (kept in the
//! group's config topic, so every worker lists them, after the configured ones, oldest
//! first; `DELETE /backups/{index}` forgets an added one — the backup itself is not
//! touched), `GET /backups/{index}` answers what one holds, the same
//! JSON as `ferry ls --json` (read from manifests and small documents, never segments).
//! `POST /backups/{index}/verify` starts the checks of `ferry verify` in the background and
//! `GET /backups/{index}/verify` follows them: progress, then the report. Runs are kept in
//! the memory of the worker that ran them (a restart forgets them).

use crate::api::ApiError;
use crate::Shared;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use ferry_core::{ErrorKind, Storage};
use ferry_sources::backup::inspect::{summarize, BackupSummary};
use ferry_sources::backup::verify::{verify_backup_with_progress, VerifyProgress, VerifyReport};
use ferry_sources::backup::Catalog;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

type AppState = Arc<Shared>;

/// The routes (behind the token, like the rest of the API).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/backups", get(list_backups).post(add_backup))
        .route(
            "/backups/{index}",
            get(backup_summary).delete(remove_backup),
        )
        .route(
            "/backups/{index}/verify",
            get(verify_status).post(start_verify),
        )
}

/// One location as `GET /backups` lists it.
#[derive(Debug, Serialize)]
pub struct BackupLocation {
    /// Its position in the worker's list: the `{index}` of `GET /backups/{index}`.
    pub index: usize,
    /// The URI with its query removed (a query may hold credentials).
    pub uri: String,
    /// Added through the API (`DELETE /backups/{index}` can remove it), not configured.
    pub added: bool,
}

async fn list_backups(State(shared): State<AppState>) -> Json<Vec<BackupLocation>> {
    Json(
        all_locations(&shared)
            .iter()
            .enumerate()
            .map(|(index, uri)| BackupLocation {
                index,
                uri: redacted(uri),
                added: index >= shared.config.backups.len(),
            })
            .collect(),
    )
}

/// Every location this worker knows: those it was configured with, then those added through
/// the API (oldest first), without repeats.
pub(crate) fn all_locations(shared: &Shared) -> Vec<String> {
    let mut all = shared.config.backups.clone();
    for uri in shared.store.locations() {
        if !all.iter().any(|u| redacted(u) == redacted(&uri)) {
            all.push(uri);
        }
    }
    all
}

/// The body of `POST /backups`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddBackup {
    /// A storage URI (`file:///…`, `s3://…`, `gs://…`, `azblob://…`).
    pub uri: String,
}

/// Adds a backup location for every worker of the group: 201 with its entry, 400 when the
/// URI is not a storage location. The location need not hold a backup yet.
async fn add_backup(
    State(shared): State<AppState>,
    body: String,
) -> Result<(StatusCode, Json<BackupLocation>), ApiError> {
    let body: AddBackup = serde_json::from_str(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("POST /backups takes {{\"uri\": \"s3://…\"}}: {e}"),
        )
    })?;
    let uri = body.uri.trim().to_string();
    if let Err(e) = ferry_core::storage::StorageUri::parse(&uri)
        .and_then(|_| Storage::open_read_only(&uri).map(|_| ()))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("uri: {}", ferry_core::error_chain(&e)),
        ));
    }
    if let Some(index) = all_locations(&shared)
        .iter()
        .position(|u| redacted(u) == redacted(&uri))
    {
        if index < shared.config.backups.len() {
            // Configured already: nothing to store.
            return Ok((
                StatusCode::OK,
                Json(BackupLocation {
                    index,
                    uri: redacted(&uri),
                    added: false,
                }),
            ));
        }
    }
    shared
        .store
        .add_location(&uri)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    // The config topic's follower applies the record shortly; wait for it so the answer's
    // index is the one GET /backups shows.
    let index = listed_within(&shared, &uri, true, "the location was written to the config topic but has not come back from it within 10 s; GET /backups will list it once it does").await?;
    let index = index.ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the added location is not listed",
        )
    })?;
    tracing::info!(backup = %redacted(&uri), index, "backup location added");
    Ok((
        StatusCode::CREATED,
        Json(BackupLocation {
            index,
            uri: redacted(&uri),
            added: true,
        }),
    ))
}

/// Forgets a location added through the API: 204 once every list shows it gone (its
/// backup is not touched), 404 for an unknown index, 409 for a configured one (`--backup`,
/// `backups:`: change the worker's configuration instead). The indices of the locations
/// after it move down by one.
async fn remove_backup(
    State(shared): State<AppState>,
    Path(index): Path<String>,
) -> Result<StatusCode, ApiError> {
    let index = parse_index(&index)?;
    let uri = location(&shared, index)?;
    if index < shared.config.backups.len() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "backup location #{index} ({}) is in the worker's configuration (--backup or backups:), not added through the API: remove it there",
                redacted(&uri)
            ),
        ));
    }
    if !shared
        .store
        .remove_location(&uri)
        .await
        .map_err(|e| ApiError::internal(&e))?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("backup location #{index} was not added through the API"),
        ));
    }
    // As for adding: answer once the config topic's follower has applied it, so the next
    // GET /backups no longer lists it.
    listed_within(&shared, &uri, false, "the removal was written to the config topic but has not come back from it within 10 s; GET /backups will stop listing the location once it does").await?;
    tracing::info!(backup = %redacted(&uri), index, "backup location removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Waits (up to 10 s) until the config topic's follower has applied an added (`listed`) or
/// removed location, so the answer matches the next `GET /backups`; returns its index when
/// listed. `late` is the 503's message when it does not come back in time.
async fn listed_within(
    shared: &Shared,
    uri: &str,
    listed: bool,
    late: &str,
) -> Result<Option<usize>, ApiError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let index = all_locations(shared)
            .iter()
            .position(|u| redacted(u) == redacted(uri));
        if index.is_some() == listed {
            return Ok(index);
        }
        if std::time::Instant::now() > deadline {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, late));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A URI as people may see it: without its query.
pub(crate) fn redacted(uri: &str) -> String {
    uri.split_once('?')
        .map_or(uri, |(base, _)| base)
        .to_string()
}

/// The `{index}` of a path: a number, or 400.
fn parse_index(index: &str) -> Result<usize, ApiError> {
    index.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("'{index}' is not a backup index: use the number GET /backups gives"),
        )
    })
}

/// The location at `index`, or 404.
fn location(shared: &Shared, index: usize) -> Result<String, ApiError> {
    let all = all_locations(shared);
    let count = all.len();
    all.into_iter().nth(index).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no backup location #{index}: this worker has {count} (GET /backups lists them)"
            ),
        )
    })
}

async fn backup_summary(
    State(shared): State<AppState>,
    Path(index): Path<String>,
) -> Result<Json<BackupSummary>, ApiError> {
    let index = parse_index(&index)?;
    let uri = location(&shared, index)?;
    let uri = uri.as_str();
    let read = async {
        let catalog = Catalog::open(Storage::open_read_only(uri)?).await?;
        summarize(&catalog).await
    };
    match read.await {
        Ok(summary) => Ok(Json(summary)),
        // No backup there yet (nothing written so far) or not a Ferry backup.
        Err(e) if e.kind() == ErrorKind::Config => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ferry_core::error_chain(&e),
        )),
        Err(e) => {
            tracing::warn!(backup = index, error = %ferry_core::error_chain(&e), "reading a backup failed");
            Err(ApiError::internal(&e))
        }
    }
}

/// Verify runs by location index, one at a time per location.
#[derive(Default)]
pub struct Verifies {
    runs: Mutex<BTreeMap<usize, VerifyRun>>,
}

/// Where a verify run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyState {
    /// Not run on this worker since it started.
    Never,
    /// Reading the backup.
    Running,
    /// Finished and nothing is damaged (warnings may remain).
    Passed,
    /// Finished and something is damaged.
    Damaged,
    /// Could not run (the location cannot be opened or listed).
    Failed,
}

/// A verify run as `GET /backups/{index}/verify` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyRun {
    /// Where it is.
    pub state: VerifyState,
    /// When it started, milliseconds since the epoch.
    pub started_ms: Option<i64>,
    /// When it ended.
    pub finished_ms: Option<i64>,
    /// How far it got.
    pub progress: VerifyProgress,
    /// What it found, once finished.
    pub report: Option<VerifyReport>,
    /// Why it could not run.
    pub error: Option<String>,
}

impl Verifies {
    fn runs(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, VerifyRun>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The run of location `index` (state `never` when there was none).
    pub fn get(&self, index: usize) -> VerifyRun {
        self.runs().get(&index).cloned().unwrap_or(VerifyRun {
            state: VerifyState::Never,
            started_ms: None,
            finished_ms: None,
            progress: VerifyProgress::default(),
            report: None,
            error: None,
        })
    }

    /// Marks a run of `index` started; false when one is running already.
    fn begin(&self, index: usize) -> bool {
        let mut runs = self.runs();
        if runs
            .get(&index)
            .is_some_and(|r| r.state == VerifyState::Running)
        {
            return false;
        }
        runs.insert(
            index,
            VerifyRun {
                state: VerifyState::Running,
                started_ms: Some(crate::now_ms()),
                finished_ms: None,
                progress: VerifyProgress::default(),
                report: None,
                error: None,
            },
        );
        true
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut VerifyRun)) {
        if let Some(run) = self.runs().get_mut(&index) {
            change(run);
        }
    }
}

/// `POST /backups/{index}/verify`: starts a run (or answers the one running) with 202.
async fn start_verify(
    State(shared): State<AppState>,
    Path(index): Path<String>,
) -> Result<(StatusCode, Json<VerifyRun>), ApiError> {
    let index = parse_index(&index)?;
    let uri = location(&shared, index)?.to_string();
    if shared.verifies.begin(index) {
        let worker = shared.clone();
        tokio::spawn(async move {
            let progress = |p: VerifyProgress| worker.verifies.update(index, |r| r.progress = p);
            let result = match Storage::open_read_only(&uri) {
                Ok(storage) => verify_backup_with_progress(storage, None, None, progress).await,
                Err(e) => Err(e),
            };
            if let Err(e) = &result {
                tracing::warn!(backup = index, error = %ferry_core::error_chain(e), "verify could not run");
            }
            worker.verifies.update(index, |r| {
                r.finished_ms = Some(crate::now_ms());
                match result {
                    Ok(report) => {
                        r.state = if report.is_ok() {
                            VerifyState::Passed
                        } else {
                            VerifyState::Damaged
                        };
                        r.report = Some(report);
                    }
                    Err(e) => {
                        r.state = VerifyState::Failed;
                        r.error = Some(ferry_core::error_chain(&e));
                    }
                }
            });
        });
    }
    Ok((StatusCode::ACCEPTED, Json(shared.verifies.get(index))))
}

/// `GET /backups/{index}/verify`: the latest run.
async fn verify_status(
    State(shared): State<AppState>,
    Path(index): Path<String>,
) -> Result<Json<VerifyRun>, ApiError> {
    let index = parse_index(&index)?;
    location(&shared, index)?;
    Ok(Json(shared.verifies.get(index)))
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn a_query_never_shows() {
        assert_eq!(
            redacted("s3://b/p?endpoint=http://x&secret_access_key=k"),
            "s3://b/p"
        );
        assert_eq!(redacted("/var/backups/x"), "/var/backups/x");
    }
}
