//! `/v1/admin/metrics`: define, list, describe, delete and replay metrics at runtime. Every
//! route needs an admin key (`admin-keys` in the config, or one made with `POST /v1/admin/keys`)
//! as `Authorization: Bearer KEY`.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/admin/metrics` `{"sql": "CREATE METRIC …", "backfill": false}` | 201 + status; 400 `invalid_sql` with `line`/`column`; 409 `exists` |
//! | `GET /v1/admin/metrics` | 200 `{"metrics": [status…]}` |
//! | `GET /v1/admin/metrics/{name}` | 200 status (lag, watermark, backfill progress, partitions); 404 |
//! | `DELETE /v1/admin/metrics/{name}` | 204; the metric stops and its results are deleted; 404 |
//! | `POST /v1/admin/metrics/{name}/replay` `{"from_time": …}` | 202; recomputes from the log, switching atomically when done |

use crate::access::Access;
use crate::error::ApiError;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sluice_core::access::Role;
use sluice_core::time::parse_rfc3339_millis;
use sluice_log::Log;
use sluice_store::Pipelines;
use sluice_store::model::Origin;
use std::sync::Arc;

/// What the admin routes need.
#[derive(Debug)]
pub struct AdminState<L> {
    /// The metric pipelines.
    pub pipelines: Pipelines<L>,
    /// The keys allowed to administer.
    pub access: Arc<Access>,
}

/// The admin routes.
pub fn router<L: Log>(state: Arc<AdminState<L>>) -> Router {
    Router::new()
        .route("/v1/admin/metrics", post(create::<L>).get(list::<L>))
        .route(
            "/v1/admin/metrics/{name}",
            get(describe::<L>).delete(delete::<L>),
        )
        .route("/v1/admin/metrics/{name}/replay", post(replay::<L>))
        .with_state(state)
}

fn authorize<L>(state: &AdminState<L>, headers: &HeaderMap) -> Result<(), ApiError> {
    state.access.authorize(headers, Role::Admin).map(|_| ())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    sql: String,
    #[serde(default)]
    backfill: bool,
}

async fn create<L: Log>(
    State(state): State<Arc<AdminState<L>>>,
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

async fn list<L: Log>(
    State(state): State<Arc<AdminState<L>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let metrics = state.pipelines.status(None).await?;
    Ok(Json(json!({ "metrics": metrics })).into_response())
}

async fn describe<L: Log>(
    State(state): State<Arc<AdminState<L>>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let mut metrics = state.pipelines.status(Some(&name)).await?;
    Ok(Json(metrics.pop()).into_response())
}

async fn delete<L: Log>(
    State(state): State<Arc<AdminState<L>>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    state.pipelines.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    /// RFC 3339 text or epoch milliseconds.
    #[serde(default)]
    from_time: Option<serde_json::Value>,
}

async fn replay<L: Log>(
    State(state): State<Arc<AdminState<L>>>,
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
