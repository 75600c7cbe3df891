//! `/v1/admin/metrics`: define, list, describe, delete and replay metrics at runtime, and
//! derived streams (`CREATE STREAM`, the same routes; a stream is not replayed). Every
//! route needs an admin key (`admin-keys` in the config, or one made with `POST /v1/admin/keys`)
//! as `Authorization: Bearer KEY`.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/admin/metrics` `{"sql": "CREATE METRIC …", "backfill": false}` | 201 + status; 400 `invalid_sql` with `line`/`column`; 409 `exists` |
//! | `GET /v1/admin/metrics` | 200 `{"metrics": [status…]}` |
//! | `GET /v1/admin/metrics/{name}` | 200 status (state and error, lag, watermark, backfill progress, lost offsets, replay, partitions with their state, reason, attempt and next retry); 404 |
//! | `DELETE /v1/admin/metrics/{name}` | 204; the metric stops and its results are deleted; 404 |
//! | `POST /v1/admin/metrics/{name}/replay` `{"from_time": …}` | 202; recomputes from the log, switching atomically when done |

use crate::error::ApiError;
use crate::keys::Access;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sluice_core::access::Role;
use sluice_core::time::parse_rfc3339_millis;
use sluice_log::LogBackend;
use sluice_pipelines::Pipelines;
use sluice_store::model::Origin;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the admin routes need.
#[derive(Debug)]
pub struct AdminState {
    /// The metric pipelines.
    pub pipelines: Pipelines<LogBackend>,
    /// The keys allowed to administer.
    pub access: Arc<Access>,
}

/// The admin routes, with their OpenAPI description.
pub fn router(state: Arc<AdminState>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(describe, delete))
        .routes(routes!(replay))
        .with_state(state)
}

fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), ApiError> {
    state.access.authorize(headers, Role::Admin).map(|_| ())
}

/// `POST /v1/admin/metrics`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    /// `CREATE METRIC name AS SELECT … FROM events … GROUP BY …, TUMBLE(timestamp, …)`, or
    /// `CREATE STREAM name AS SELECT column [AS name], … FROM events [WHERE …]`.
    sql: String,
    /// Compute it over the history the log retains too.
    #[serde(default)]
    backfill: bool,
}

/// Defines a metric at runtime and starts computing it.
#[utoipa::path(post, path = "/v1/admin/metrics", operation_id = "create_metric", tag = "admin", security(("bearer" = [])),
    request_body = CreateRequest,
    responses(
        (status = 201, description = "Created: the metric's status", body = serde_json::Value),
        (status = 400, description = "Invalid SQL (`invalid_sql`, with `line` and `column`) or body", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
        (status = 409, description = "A metric of this name exists", body = crate::error::ErrorBody),
    ))]
async fn create(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: CreateRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            "invalid_body",
            format!("expected {{\"sql\": \"CREATE METRIC …\", \"backfill\": false}}: {error}"),
        )
    })?;
    if request.sql.len() > 64 * 1024 {
        return Err(ApiError::bad_request(
            "too_large",
            "sql is longer than 64 KiB",
        ));
    }
    let status = state
        .pipelines
        .create(&request.sql, request.backfill, Origin::Api)
        .await?;
    Ok((StatusCode::CREATED, Json(status)).into_response())
}

/// Every metric's status: state, lag, watermark, backfill and replay progress, partitions.
#[utoipa::path(get, path = "/v1/admin/metrics", operation_id = "list_metric_status", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"metrics\": [status…]}`", body = serde_json::Value),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
    ))]
async fn list(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let metrics = state.pipelines.status(None).await?;
    Ok(Json(json!({ "metrics": metrics })).into_response())
}

/// One metric's status.
#[utoipa::path(get, path = "/v1/admin/metrics/{name}", operation_id = "get_metric_status", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path, description = "The metric")),
    responses(
        (status = 200, description = "The status, with the SQL", body = serde_json::Value),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
        (status = 404, description = "No such metric", body = crate::error::ErrorBody),
    ))]
async fn describe(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let mut metrics = state.pipelines.status(Some(&name)).await?;
    Ok(Json(metrics.pop()).into_response())
}

/// Stops a metric and deletes its results.
#[utoipa::path(delete, path = "/v1/admin/metrics/{name}", operation_id = "delete_metric", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path, description = "The metric")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
        (status = 404, description = "No such metric", body = crate::error::ErrorBody),
    ))]
async fn delete(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    state.pipelines.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/admin/metrics/{name}/replay`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    /// RFC 3339 text or epoch milliseconds.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "2024-05-01T00:00:00Z")]
    from_time: Option<serde_json::Value>,
}

/// Recomputes a metric from the log (everything, or windows from a time on) and switches to
/// the new results atomically when done.
#[utoipa::path(post, path = "/v1/admin/metrics/{name}/replay", operation_id = "replay_metric", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path, description = "The metric")), request_body = ReplayRequest,
    responses(
        (status = 202, description = "Started: `{\"replaying\", \"from_time\"}`", body = serde_json::Value),
        (status = 400, description = "Invalid body or time", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
        (status = 404, description = "No such metric", body = crate::error::ErrorBody),
        (status = 409, description = "A replay of it is running", body = crate::error::ErrorBody),
    ))]
async fn replay(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: ReplayRequest = if body.is_empty() {
        ReplayRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            ApiError::bad_request(
                "invalid_body",
                format!("expected {{\"from_time\": \"2024-05-01T00:00:00Z\"}} or {{}}: {error}"),
            )
        })?
    };
    let from_time = match request.from_time {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(ms)) => Some(ms.as_i64().ok_or_else(|| {
            ApiError::bad_request(
                "invalid_time",
                "from_time must be epoch milliseconds or RFC 3339",
            )
        })?),
        Some(serde_json::Value::String(text)) => Some(
            parse_rfc3339_millis(&text)
                .map_err(|reason| ApiError::bad_request("invalid_time", reason))?,
        ),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_time",
                "from_time must be epoch milliseconds or RFC 3339",
            ));
        }
    };
    state.pipelines.replay(&name, from_time).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "replaying": name, "from_time": from_time })),
    )
        .into_response())
}
