//! Restores in the API, for the console's restore wizard:
//!
//! | request | answer |
//! |---|---|
//! | `POST /restore/plan` (JSON, [`PlanRequest`]) | the plan `ferry restore --dry-run` prints, as JSON ([`RestorePlan`]), with the pipeline that runs it |
//! | `POST /restore/progress` (JSON, [`ProgressRequest`]) | records the target topics hold now, per topic |
//!
//! Planning reads the backup and runs the restore pipeline with a counting sink in place of
//! the Kafka sink (see [`ferry_sources::backup::plan`]): nothing is written, not even a
//! checkpoint. Planning with another `until` answers how many records each partition keeps
//! at that time (the wizard's slider). Running a restore is the existing pipeline API: the
//! wizard submits the plan's `pipeline` with `PUT /pipelines/{name}` and follows it with
//! `GET /pipelines/{name}/status` and `POST /restore/progress` (records written = records
//! on the target now − records there when it planned).
//!
//! The target is this worker's cluster (its brokers) unless the request names one
//! (`target`: `brokers`, `tls`, `sasl`, as on the kafka sink); a worker whose cluster needs
//! TLS or SASL asks for `target`, so no secret of the worker's is copied into a pipeline.

use crate::api::ApiError;
use crate::Shared;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use ferry_core::{Error, ErrorKind};
use ferry_kafka::{Client, ConnectionOptions, OffsetSpec};
use ferry_sources::backup::plan::{self, Partitioning, RestorePlan, RestoreRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

type AppState = Arc<Shared>;

/// The routes (behind the token, like the rest of the API).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/restore/plan", post(plan_restore))
        .route("/restore/progress", post(progress))
}

/// A point in time: RFC 3339 text or epoch milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Until {
    /// Epoch milliseconds.
    Millis(i64),
    /// RFC 3339 (or milliseconds as text).
    Text(String),
}

/// What to restore: the wizard's choices (`ferry restore`'s flags as JSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The backup: its index in `GET /backups`.
    pub backup: usize,
    /// Topics to restore: names or `/regex/` (default: every topic of the backup).
    #[serde(default)]
    pub topics: Vec<String>,
    /// New names: `{old: new}`.
    #[serde(default)]
    pub renames: BTreeMap<String, String>,
    /// Point in time: per partition, every record before the first one stamped later.
    #[serde(default)]
    pub until: Option<Until>,
    /// First original offset to restore (every partition).
    #[serde(default)]
    pub from_offset: Option<i64>,
    /// Original offset to stop before (every partition).
    #[serde(default)]
    pub to_offset: Option<i64>,
    /// `preserve` (default) or `murmur2`.
    #[serde(default)]
    pub partitioning: Partitioning,
    /// Partition moves `{"0": 2}` applied with `preserve`.
    #[serde(default)]
    pub partition_map: BTreeMap<i32, i32>,
    /// Commit the backed-up consumer-group offsets, translated.
    #[serde(default)]
    pub groups: bool,
    /// Restore group OLD as NEW: `{old: new}`.
    #[serde(default)]
    pub group_renames: BTreeMap<String, String>,
    /// Append to target topics holding records this restore did not write.
    #[serde(default)]
    pub allow_existing: bool,
    /// Restore damaged partitions up to their first damaged segment.
    #[serde(default)]
    pub skip_damaged: bool,
    /// Pipeline name (default: `restore-<hash>` of what is restored, as `ferry restore`).
    #[serde(default)]
    pub name: Option<String>,
    /// Where the restore keeps its checkpoint and offset map (default: the local state
    /// folder of the worker that runs it).
    #[serde(default)]
    pub state: Option<String>,
    /// Key files of an encrypted backup (paths on the workers).
    #[serde(default)]
    pub key_files: Vec<String>,
    /// The target cluster: `brokers`, `tls`, `sasl` as on the kafka sink (default: this
    /// worker's cluster).
    #[serde(default)]
    pub target: Option<Map<String, Value>>,
}

/// The plan as `POST /restore/plan` answers it.
#[derive(Debug, Serialize)]
pub struct PlanAnswer {
    /// The backup's index.
    pub backup: usize,
    /// The plan.
    #[serde(flatten)]
    pub plan: RestorePlan,
}

/// Maps a planning error: the request's fault (400) or the worker's (5xx). The backup's URI
/// shows without its query (which may hold credentials), as `GET /backups` shows it.
fn plan_error(e: &Error, uri: &str) -> ApiError {
    let message = ferry_core::error_chain(e).replace(uri, &crate::backups::redacted(uri));
    let status = match e.kind() {
        ErrorKind::Config | ErrorKind::Refused | ErrorKind::InvalidData => StatusCode::BAD_REQUEST,
        _ if e.is_retriable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, message)
}

/// The target's brokers and connection blocks: the request's, or this worker's brokers.
fn target(
    shared: &Shared,
    given: Option<&Map<String, Value>>,
) -> Result<(Vec<String>, Map<String, Value>), ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    match given {
        Some(t) => {
            let brokers: Vec<String> = match t.get("brokers") {
                Some(b) => serde_json::from_value(b.clone())
                    .map_err(|e| bad(format!("target.brokers: {e}")))?,
                None => return Err(bad("target: give its brokers".into())),
            };
            if brokers.is_empty() {
                return Err(bad("target.brokers is empty".into()));
            }
            let mut rest = t.clone();
            rest.remove("brokers");
            if let Some(k) = rest.keys().find(|k| !matches!(k.as_str(), "tls" | "sasl")) {
                return Err(bad(format!(
                    "target.{k}: unknown (target takes brokers, tls and sasl)"
                )));
            }
            Ok((brokers, rest))
        }
        None => {
            let c = &shared.config.connection;
            if c.tls.is_some() || c.sasl.is_some() {
                return Err(bad(
                    "this worker's cluster uses TLS or SASL: give the restore's `target` \
                     (brokers, tls, sasl as on the kafka sink; a password as ${VAR})"
                        .into(),
                ));
            }
            Ok((c.brokers.clone(), Map::new()))
        }
    }
}

/// The request `ferry restore` would make of these choices.
pub fn request_of(shared: &Shared, r: &PlanRequest) -> Result<RestoreRequest, ApiError> {
    let all = crate::backups::all_locations(shared);
    let count = all.len();
    let from = all.into_iter().nth(r.backup).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no backup location #{}: this worker has {count} (GET /backups lists them)",
                r.backup
            ),
        )
    })?;
    let until = match &r.until {
        None => None,
        Some(Until::Millis(ms)) => Some(ms.to_string()),
        Some(Until::Text(t)) => {
            if ferry_core::transforms::filter::TimeBound::parse(t).is_err() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "until: '{t}' is not an RFC 3339 time or epoch milliseconds, e.g. \
                         2026-12-01T00:00:00Z"
                    ),
                ));
            }
            Some(t.clone())
        }
    };
    let (brokers, connection) = target(shared, r.target.as_ref())?;
    let pairs = |m: &BTreeMap<String, String>| -> Vec<(String, String)> {
        m.iter().map(|(a, b)| (a.clone(), b.clone())).collect()
    };
    Ok(RestoreRequest {
        from,
        brokers,
        connection,
        topics: r.topics.clone(),
        renames: pairs(&r.renames),
        until,
        from_offset: r.from_offset,
        to_offset: r.to_offset,
        groups: r.groups,
        group_renames: pairs(&r.group_renames),
        partitioning: r.partitioning,
        partition_map: r.partition_map.clone(),
        allow_existing: r.allow_existing,
        skip_damaged: r.skip_damaged,
        state: r.state.clone(),
        name: r.name.clone(),
        key_files: r.key_files.clone(),
    })
}

/// `POST /restore/plan`: the dry run's plan, as JSON.
async fn plan_restore(
    State(shared): State<AppState>,
    body: String,
) -> Result<Json<PlanAnswer>, ApiError> {
    let r: PlanRequest = serde_json::from_str(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the restore request is not what POST /restore/plan takes: {e}"),
        )
    })?;
    let request = request_of(&shared, &r)?;
    let started = std::time::Instant::now();
    let plan = plan::plan(&shared.registry, &request).await.map_err(|e| {
        let e = plan_error(&e, &request.from);
        tracing::info!(backup = r.backup, error = %e, "restore not planned");
        e
    })?;
    tracing::info!(
        backup = r.backup,
        name = %plan.name,
        records = plan.total_records,
        ms = started.elapsed().as_millis() as u64,
        "restore planned"
    );
    Ok(Json(PlanAnswer {
        backup: r.backup,
        plan,
    }))
}

/// Target topics to count (`POST /restore/progress`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    /// Topic names on the target.
    pub topics: Vec<String>,
    /// The target as in [`PlanRequest::target`] (default: this worker's cluster).
    #[serde(default)]
    pub target: Option<Map<String, Value>>,
}

/// What a target topic holds now.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TopicCount {
    /// Whether it exists.
    pub exists: bool,
    /// Records per partition (log start to end).
    pub partitions: BTreeMap<i32, i64>,
    /// Records in all partitions.
    pub records: i64,
}

/// `POST /restore/progress`: records each target topic holds now.
async fn progress(
    State(shared): State<AppState>,
    body: String,
) -> Result<Json<BTreeMap<String, TopicCount>>, ApiError> {
    let r: ProgressRequest = serde_json::from_str(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the request is not what POST /restore/progress takes: {e}"),
        )
    })?;
    let own;
    let client: &Client = match &r.target {
        None => &shared.client,
        Some(t) => {
            let options: ConnectionOptions = serde_json::from_value(Value::Object(t.clone()))
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("target: {e}")))?;
            let config = options
                .client_config()
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("target: {e}")))?;
            own = Client::connect(config).await.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("cannot reach the target: {e}"),
                )
            })?;
            &own
        }
    };
    let kafka = |e: ferry_kafka::ClientError| {
        ApiError::new(StatusCode::BAD_GATEWAY, format!("the target cluster: {e}"))
    };
    let md = client.metadata(Some(&r.topics)).await.map_err(kafka)?;
    let mut out = BTreeMap::new();
    for topic in &r.topics {
        let mut count = TopicCount::default();
        let n = md
            .topic(topic)
            .filter(|t| t.error.is_none() && !t.partitions.is_empty())
            .map(|t| t.partitions.len() as i32);
        if let Some(n) = n {
            let all: Vec<i32> = (0..n).collect();
            let starts = client
                .list_offsets(topic, &all, OffsetSpec::Earliest)
                .await
                .map_err(kafka)?;
            let ends = client
                .list_offsets(topic, &all, OffsetSpec::Latest)
                .await
                .map_err(kafka)?;
            count.exists = true;
            for (p, end) in ends {
                let start = starts.get(&p).copied().unwrap_or(0).min(end);
                count.partitions.insert(p, end - start);
                count.records += end - start;
            }
        }
        out.insert(topic.clone(), count);
    }
    Ok(Json(out))
}
