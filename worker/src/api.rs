//! The REST API, shaped like Kafka Connect's so habits and tools carry over:
//!
//! | request | answer |
//! |---|---|
//! | `GET /pipelines` | names |
//! | `PUT /pipelines/{name}` (YAML or JSON) | 201 created, 200 updated, 400 with line and column |
//! | `GET /pipelines/{name}` | its text (secrets as their `${VAR}` references) and state |
//! | `DELETE /pipelines/{name}` | 204 |
//! | `GET /pipelines/{name}/status` | state, tasks, partitions with offsets and lag |
//! | `POST /pipelines/{name}/validate` (YAML or JSON) | 200 `{"valid": true}`, 400 as `PUT` |
//! | `POST /pipelines/{name}/pause`, `/resume`, `/restart` | 202 |
//! | `GET /backups`, `GET /backups/{index}` | the worker's backup locations, what one holds ([`crate::backups`]) |
//! | `POST /restore/plan`, `POST /restore/progress` | a restore's plan (the dry run's), the records its targets hold ([`crate::restore`]) |
//! | `GET /ui` | the console ([`crate::ui`]; its files need no token, its data calls do) |
//! | `GET /workers` | members and what each runs |
//! | `GET /healthz` | 200 while the worker runs (no token needed: probes) |
//! | `GET /metrics` | Prometheus text |
//!
//! Errors are `{"error": "...", "line": L, "column": C}` (the position when there is one).
//! With `FERRY_API_TOKEN` set, every request but `/healthz` needs
//! `Authorization: Bearer <token>`.

use crate::store::TargetState;
use crate::Shared;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_core::Error;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::watch;

type AppState = Arc<Shared>;

/// An API error: a status code and a message (with the YAML position when known).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    line: Option<u64>,
    column: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            line: None,
            column: None,
        }
    }

    fn not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("pipeline '{name}' not found (GET /pipelines lists them)"),
        )
    }

    /// A pipeline that does not pass `ferry validate`'s checks.
    fn invalid(e: &Error) -> Self {
        let (line, column) = match e {
            Error::Config {
                location: Some(l), ..
            } => (Some(l.line), Some(l.column)),
            _ => (None, None),
        };
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: e.to_string(),
            line,
            column,
        }
    }

    pub(crate) fn internal(e: &Error) -> Self {
        let status = if e.is_retriable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Self::new(status, ferry_core::error_chain(e))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let (Some(l), Some(c)) = (self.line, self.column) {
            body["line"] = json!(l);
            body["column"] = json!(c);
        }
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The API's routes.
pub fn router(shared: AppState) -> Router {
    Router::new()
        .route("/pipelines", get(list_pipelines))
        .route(
            "/pipelines/{name}",
            get(get_pipeline).put(put_pipeline).delete(delete_pipeline),
        )
        .route("/pipelines/{name}/status", get(pipeline_status))
        .route("/pipelines/{name}/validate", post(validate_pipeline))
        .route("/pipelines/{name}/pause", post(pause))
        .route("/pipelines/{name}/resume", post(resume))
        .route("/pipelines/{name}/restart", post(restart))
        .route("/workers", get(workers))
        .route("/metrics", get(metrics))
        .merge(crate::backups::routes())
        .merge(crate::restore::routes())
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ))
        .route("/healthz", get(healthz))
        .merge(crate::ui::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(shared)
}

/// Serves the API on `listener` until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: AppState,
    mut stop: watch::Receiver<bool>,
) {
    let app = router(shared);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "the REST API stopped");
    }
}

/// Refuses requests without the bearer token when `FERRY_API_TOKEN` is set.
async fn require_token(
    State(shared): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &shared.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send 'Authorization: Bearer <FERRY_API_TOKEN>'",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Compares without stopping at the first difference (the time does not tell how much of
/// a guessed token was right).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn list_pipelines(State(shared): State<AppState>) -> Json<Vec<String>> {
    Json(shared.store.all().into_keys().collect())
}

/// A pipeline as the API returns it.
#[derive(Serialize)]
struct PipelineInfo {
    name: String,
    /// The text as given: `${VAR}` references stay references, so secrets never show.
    config: String,
    state: TargetState,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    version: i64,
}

async fn get_pipeline(
    State(shared): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<PipelineInfo>> {
    let def = shared
        .store
        .get(&name)
        .ok_or_else(|| ApiError::not_found(&name))?;
    Ok(Json(PipelineInfo {
        name: def.name,
        config: def.config,
        state: def.state,
        file: def.file,
        version: def.version,
    }))
}

/// Checks a pipeline text as `ferry validate` does and that its `name` matches `name`.
pub fn check_pipeline(shared: &Shared, name: &str, text: &str) -> Result<(), ApiError> {
    if !valid_name(name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("'{name}' is not a pipeline name: use letters, digits, '.', '_' and '-'"),
        ));
    }
    let file = format!("pipeline '{name}'");
    if let Some(e) = shared
        .registry
        .check_pipeline(text, &file)
        .into_iter()
        .next()
    {
        return Err(ApiError::invalid(&e));
    }
    let named = crate::dir::pipeline_name(text, &file).map_err(|e| ApiError::invalid(&e))?;
    if named != name {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the pipeline's name is '{named}' but the URL says '{name}': they must match"),
        ));
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Checks a `PUT` or `validate` body: JSON when its content type says so, then the pipeline.
fn check_body(shared: &Shared, name: &str, headers: &HeaderMap, body: &str) -> ApiResult<()> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/yaml");
    if content_type.starts_with("application/json") {
        // JSON is YAML too: it is kept as sent, after a check that it is JSON.
        serde_json::from_str::<Value>(body).map_err(|e| ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("the body is not JSON: {e}"),
            line: Some(e.line() as u64),
            column: Some(e.column() as u64),
        })?;
    }
    check_pipeline(shared, name, body)
}

/// `POST /pipelines/{name}/validate`: the checks of `PUT`, nothing stored (the console's
/// editor checks before it saves).
async fn validate_pipeline(
    State(shared): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Json<Value>> {
    check_body(&shared, &name, &headers, &body)?;
    Ok(Json(json!({ "valid": true })))
}

async fn put_pipeline(
    State(shared): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    check_body(&shared, &name, &headers, &body)?;
    let created = shared
        .store
        .put(&name, &body, None)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let def = shared
        .store
        .get(&name)
        .ok_or_else(|| ApiError::not_found(&name))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let info = PipelineInfo {
        name: def.name,
        config: def.config,
        state: def.state,
        file: def.file,
        version: def.version,
    };
    Ok((status, Json(info)).into_response())
}

async fn delete_pipeline(
    State(shared): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    match shared.store.delete(&name).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found(&name)),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

async fn pipeline_status(
    State(shared): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<crate::status::PipelineStatus>> {
    let def = shared
        .store
        .get(&name)
        .ok_or_else(|| ApiError::not_found(&name))?;
    Ok(Json(shared.status.pipeline_status(&def, &shared.plan())))
}

async fn set_state(shared: &Shared, name: &str, state: TargetState) -> ApiResult<StatusCode> {
    match shared.store.set_state(name, state).await {
        Ok(true) => Ok(StatusCode::ACCEPTED),
        Ok(false) => Err(ApiError::not_found(name)),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

async fn pause(State(shared): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    set_state(&shared, &name, TargetState::Paused).await
}

async fn resume(State(shared): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    set_state(&shared, &name, TargetState::Running).await
}

async fn restart(
    State(shared): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    match shared.store.restart(&name).await {
        Ok(true) => Ok(StatusCode::ACCEPTED),
        Ok(false) => Err(ApiError::not_found(&name)),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

async fn workers(State(shared): State<AppState>) -> Json<Value> {
    let assigned = shared.assigned();
    let plan = shared.plan();
    let members: Vec<Value> = plan
        .members
        .iter()
        .map(|m| {
            json!({
                "worker": m.url,
                "member_id": m.id,
                "leader": m.url == plan.leader,
                "units": m.units,
            })
        })
        .collect();
    Json(json!({
        "group": shared.config.group,
        "generation": assigned.as_ref().map(|a| a.generation),
        "this_worker": shared.url,
        "workers": members,
    }))
}

async fn healthz(State(shared): State<AppState>) -> Json<Value> {
    let assigned = shared.assigned();
    Json(json!({
        "status": "ok",
        "worker": shared.url,
        "member": assigned.is_some(),
        "generation": assigned.map(|a| a.generation),
    }))
}

async fn metrics(State(shared): State<AppState>) -> Response {
    let body = shared
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
