//! Backup locations in the API: `GET /backups` lists the locations the worker was given
//! (`--backup URI`, `backups:`), `GET /backups/{index}` answers what one holds, the same
//! JSON as `ferry ls --json` (read from manifests and small documents, never segments).

use crate::api::ApiError;
use crate::Shared;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use ferry_core::{ErrorKind, Storage};
use ferry_sources::backup::inspect::{summarize, BackupSummary};
use ferry_sources::backup::Catalog;
use serde::Serialize;
use std::sync::Arc;

type AppState = Arc<Shared>;

/// The routes (behind the token, like the rest of the API).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/backups", get(list_backups))
        .route("/backups/{index}", get(backup_summary))
}

/// One location as `GET /backups` lists it.
#[derive(Debug, Serialize)]
pub struct BackupLocation {
    /// Its position in the worker's list: the `{index}` of `GET /backups/{index}`.
    pub index: usize,
    /// The URI with its query removed (a query may hold credentials).
    pub uri: String,
}

async fn list_backups(State(shared): State<AppState>) -> Json<Vec<BackupLocation>> {
    Json(
        shared
            .config
            .backups
            .iter()
            .enumerate()
            .map(|(index, uri)| BackupLocation {
                index,
                uri: redacted(uri),
            })
            .collect(),
    )
}

/// A URI as people may see it: without its query.
fn redacted(uri: &str) -> String {
    uri.split_once('?')
        .map_or(uri, |(base, _)| base)
        .to_string()
}

async fn backup_summary(
    State(shared): State<AppState>,
    Path(index): Path<usize>,
) -> Result<Json<BackupSummary>, ApiError> {
    let uri = shared.config.backups.get(index).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no backup location #{index}: this worker has {} (GET /backups lists them)",
                shared.config.backups.len()
            ),
        )
    })?;
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
