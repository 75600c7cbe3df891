//! The query REST API. Every route needs a read key (`Authorization: Bearer KEY`) and reads
//! only that key's tenant.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/metrics` | 200 `{"metrics": [{name, keys, values, window, …}]}` |
//! | `GET /v1/metrics/{name}?from&to&resolution&top&by&filter=KEY:VALUE` | 200 series; 400 with what to fix; 404 unknown metric |
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

use crate::access::Access;
use crate::error::ApiError;
use crate::query::Serving;
use crate::query::params::SeriesParams;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sluice_core::access::Role;
use std::sync::Arc;

/// What the query routes need.
#[derive(Debug)]
pub struct RestState {
    /// Keys.
    pub access: Arc<Access>,
    /// The serving engine.
    pub serving: Arc<Serving>,
}

/// The query routes.
pub fn router(state: Arc<RestState>) -> Router {
    Router::new()
        .route("/v1/metrics", get(list))
        .route("/v1/metrics/{name}", get(series))
        .with_state(state)
}

async fn list(
    State(state): State<Arc<RestState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.access.authorize(&headers, Role::Read)?;
    Ok(axum::Json(serde_json::json!({ "metrics": state.serving.metrics() })).into_response())
}

async fn series(
    State(state): State<Arc<RestState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let grant = state.access.authorize(&headers, Role::Read)?;
    let Some(tenant) = grant.tenant() else {
        return Err(ApiError::forbidden("this key belongs to no tenant"));
    };
    let Query(pairs) = query.map_err(|rejection| {
        ApiError::bad_request(
            "invalid_query",
            format!("the query string is malformed: {rejection}"),
        )
    })?;
    let params = SeriesParams::from_pairs(pairs)?;
    let body = state.serving.series_json(tenant, &name, &params).await?;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
