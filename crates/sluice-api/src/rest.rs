//! The query REST API. Every route needs a read key (`Authorization: Bearer KEY`) and reads
//! only that key's tenant.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/metrics` | 200 `{"metrics": [{name, keys, values, window, …}]}` |
//! | `GET /v1/metrics/{name}?from&to&resolution&top&by&filter=KEY:VALUE` | 200 series; 400 with what to fix; 404 unknown metric |
//! | `GET /v1/metrics/{name}/export?from&to&filter=KEY:VALUE&format=csv\|ndjson` | 200 every window of the range, streamed (see [`crate::query::export`]) |
//! | `GET /v1/sessions/{name}/open` | 200 `{"sessions", "tenant", "open"}`: sessions open now |
//!
//! A series answer:
//!
//! ```json
//! {"metric": "page_views", "tenant": "shop", "from": 1714560000000, "to": 1714563600000,
//!  "resolution_ms": null, "watermark": 1714563540000, "keys": ["url"],
//!  "columns": ["start", "end", "final", "views", "visitors"],
//!  "series": [{"key": {"url": "/home"}, "points": [[1714560000000, 1714560060000, true, 12, 5]]}]}
//! ```
//!
//! Each point is `[start, end, final, values…]` in `columns` order: `final` windows can no
//! longer change; open ones are the live state and will.

use crate::error::ApiError;
use crate::keys::Access;
use crate::query::Serving;
use crate::query::export::ExportParams;
use crate::query::params::SeriesParams;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sluice_core::access::Role;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the query routes need.
#[derive(Debug)]
pub struct RestState {
    /// Keys.
    pub access: Arc<Access>,
    /// The serving engine.
    pub serving: Arc<Serving>,
}

/// The query routes, with their OpenAPI description.
pub fn router(state: Arc<RestState>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(series))
        .routes(routes!(export))
        .routes(routes!(open_sessions))
        .with_state(state)
}

/// `{"metrics": [...]}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MetricList {
    /// Every metric, by name.
    pub metrics: Vec<crate::query::MetricInfo>,
}

/// A series answer (documentation schema: the answer is written straight from the cache).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SeriesAnswerDoc {
    /// The metric.
    pub metric: String,
    /// The key's tenant.
    pub tenant: String,
    /// Windows starting at or after this, epoch ms.
    pub from: i64,
    /// Windows starting before this, epoch ms.
    pub to: i64,
    /// Bucket size, ms; `null` for the metric's own windows.
    pub resolution_ms: Option<i64>,
    /// Windows closing (end + allowed lateness) at or before this are final.
    pub watermark: Option<i64>,
    /// Group key names.
    pub keys: Vec<String>,
    /// `start`, `end`, `final`, then the aggregates: the meaning of each point's items.
    pub columns: Vec<String>,
    /// One series per group key.
    pub series: Vec<SeriesDoc>,
}

/// One group key's points.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SeriesDoc {
    /// `{"key name": value}`.
    pub key: serde_json::Value,
    /// `[start, end, final, values…]` in `columns` order, by start.
    pub points: Vec<Vec<serde_json::Value>>,
}

/// Lists the metrics a read key can query: names, group keys, aggregates and windows.
#[utoipa::path(get, path = "/v1/metrics", operation_id = "list_metrics", tag = "query", security(("bearer" = [])),
    responses(
        (status = 200, description = "The metrics", body = MetricList),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not a read key", body = crate::error::ErrorBody),
        (status = 429, description = "The key's request rate is spent (see Retry-After)", body = crate::error::ErrorBody),
    ))]
async fn list(
    State(state): State<Arc<RestState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.access.authorize(&headers, Role::Read)?;
    let metrics = state.serving.metrics();
    Ok(axum::Json(MetricList { metrics }).into_response())
}

/// Reads one metric as time series of the key's tenant.
#[utoipa::path(get, path = "/v1/metrics/{name}", operation_id = "query_metric", tag = "query", security(("bearer" = [])),
    params(
        ("name" = String, Path, description = "The metric"),
        ("from" = Option<String>, Query, description = "Start: RFC 3339, epoch ms, `now` or `now-24h` (default: `to` − 1h)"),
        ("to" = Option<String>, Query, description = "End, exclusive (default `now`)"),
        ("resolution" = Option<String>, Query, description = "`raw` (default) or a multiple of the window like `1h`, `1d`"),
        ("top" = Option<u32>, Query, description = "Only the N group keys with the largest `by` over the range"),
        ("by" = Option<String>, Query, description = "The aggregate `top` ranks by (default the first)"),
        ("filter" = Option<Vec<String>>, Query, description = "`KEY:VALUE`, repeatable: values of one key are alternatives, keys combine"),
    ),
    responses(
        (status = 200, description = "The series", body = SeriesAnswerDoc),
        (status = 400, description = "A parameter is wrong: the message says what to write", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not a read key", body = crate::error::ErrorBody),
        (status = 404, description = "No such metric", body = crate::error::ErrorBody),
        (status = 429, description = "The key's request rate is spent (see Retry-After)", body = crate::error::ErrorBody),
    ))]
async fn series(
    State(state): State<Arc<RestState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (tenant, pairs) = read_request(&state, &headers, query)?;
    let params = SeriesParams::from_pairs(pairs)?;
    let body = state.serving.series_json(&tenant, &name, &params).await?;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Exports every window of a metric in a range, the key's tenant's, as CSV or NDJSON: final
/// windows in window-start order, then the open ones. Streamed as it is read, so a range of
/// any size takes constant memory; consistent at the moment the export starts.
#[utoipa::path(get, path = "/v1/metrics/{name}/export", operation_id = "export_metric", tag = "query", security(("bearer" = [])),
    params(
        ("name" = String, Path, description = "The metric"),
        ("from" = Option<String>, Query, description = "Start: RFC 3339, epoch ms, `now` or `now-24h` (default: `to` − 1h)"),
        ("to" = Option<String>, Query, description = "End, exclusive (default `now`)"),
        ("filter" = Option<Vec<String>>, Query, description = "`KEY:VALUE`, repeatable: values of one key are alternatives, keys combine"),
        ("format" = Option<String>, Query, description = "`ndjson` (default): one `{key, start, end, final, values}` object per line; `csv`: a header line (key names, start, end, final, aggregate names), then one line per window"),
    ),
    responses(
        (status = 200, description = "Every window of the range, one per line", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "A parameter is wrong: the message says what to write", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not a read key", body = crate::error::ErrorBody),
        (status = 404, description = "No such metric", body = crate::error::ErrorBody),
        (status = 429, description = "The key's request rate is spent (see Retry-After)", body = crate::error::ErrorBody),
    ))]
async fn export(
    State(state): State<Arc<RestState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (tenant, pairs) = read_request(&state, &headers, query)?;
    let params = ExportParams::from_pairs(pairs)?;
    let format = params.format;
    let rows = state.serving.export(&tenant, &name, params).await?;
    let mut response = axum::body::Body::from_stream(rows).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(response)
}

/// How many of the key's tenant's sessions (`CREATE SESSIONS`) are open now: the live count
/// of visitors in a session.
#[utoipa::path(get, path = "/v1/sessions/{name}/open", operation_id = "open_sessions", tag = "query", security(("bearer" = [])),
    params(("name" = String, Path, description = "The sessions' name")),
    responses(
        (status = 200, description = "The count", body = crate::query::OpenSessions),
        (status = 400, description = "The name is not a CREATE SESSIONS definition", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not a read key", body = crate::error::ErrorBody),
        (status = 404, description = "No such sessions", body = crate::error::ErrorBody),
        (status = 429, description = "The key's request rate is spent (see Retry-After)", body = crate::error::ErrorBody),
    ))]
async fn open_sessions(
    State(state): State<Arc<RestState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (tenant, _) = read_request(&state, &headers, Ok(Query(Vec::new())))?;
    let open = state.serving.open_sessions(&tenant, &name).await?;
    Ok(axum::Json(open).into_response())
}

/// What every read of one metric checks first: a read key of a tenant, and a query string
/// that parses. Returns the tenant and the query's pairs.
fn read_request(
    state: &RestState,
    headers: &HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<(Arc<str>, Vec<(String, String)>), ApiError> {
    let grant = state.access.authorize(headers, Role::Read)?;
    let Some(tenant) = grant.tenant() else {
        return Err(ApiError::forbidden("this key belongs to no tenant"));
    };
    let Query(pairs) = query.map_err(|rejection| {
        ApiError::bad_request(
            "invalid_query",
            format!("the query string is malformed: {rejection}"),
        )
    })?;
    Ok((Arc::clone(tenant), pairs))
}
