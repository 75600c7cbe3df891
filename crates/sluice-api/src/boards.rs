//! `/v1/boards`: the dashboard's saved boards. A board is a named set of panels (metric, value,
//! filters, range, resolution, top-N, chart type, size) of one tenant; its read keys save, list,
//! open and delete them. The dashboard opens one by URL (`/#board=NAME`, full screen with
//! `&wall`).
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/boards` | 200 `{"boards": [board…]}` |
//! | `GET /v1/boards/{name}` | 200 board; 404 |
//! | `PUT /v1/boards/{name}` `{"title"?, "panels": [panel…]}` | 200 board, created or replaced; 400 naming what to fix |
//! | `DELETE /v1/boards/{name}` | 204; 404 |
//!
//! Bounds: names as tenant names (1–64 of `a-z 0-9 - _`), at most [`MAX_BOARDS`] boards per
//! tenant and [`MAX_PANELS`] panels per board, and every panel's metric and value must exist.

use crate::error::ApiError;
use crate::keys::Access;
use crate::query::Serving;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sluice_core::access::Role;
use sluice_core::tenant::check_tenant_name;
use sluice_core::time::now_millis;
use sluice_store::BoardRecord;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The most boards a tenant keeps.
pub const MAX_BOARDS: usize = 100;
/// The most panels on one board.
pub const MAX_PANELS: usize = 24;

/// What the board routes need.
#[derive(Debug)]
pub struct BoardsState {
    /// Keys and the store.
    pub access: Arc<Access>,
    /// The metrics a panel may show.
    pub serving: Arc<Serving>,
}

/// The board routes, with their OpenAPI description.
pub fn router(state: Arc<BoardsState>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_boards))
        .routes(routes!(get_board, put_board, delete_board))
        .with_state(state)
}

/// One panel of a board.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    /// The metric.
    pub metric: String,
    /// The aggregate drawn (one of the metric's values).
    pub value: String,
    /// `key:value` filters, as the query API takes them.
    #[serde(default)]
    pub filters: Vec<String>,
    /// `1h`, `24h` or `7d`.
    #[serde(default = "default_range")]
    pub range: String,
    /// `raw`, `1h` or `1d`.
    #[serde(default = "default_resolution")]
    pub resolution: String,
    /// The N keys with the largest value.
    #[serde(default = "default_top")]
    pub top: u32,
    /// `line` or `table`.
    #[serde(default = "default_chart")]
    pub chart: String,
    /// `small`, `medium` or `large`.
    #[serde(default = "default_size")]
    pub size: String,
}

fn default_range() -> String {
    "1h".into()
}
fn default_resolution() -> String {
    "raw".into()
}
fn default_top() -> u32 {
    10
}
fn default_chart() -> String {
    "line".into()
}
fn default_size() -> String {
    "medium".into()
}

/// A board as saved (`PUT`'s body).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BoardSpec {
    /// A title to show (default: the name).
    #[serde(default)]
    pub title: Option<String>,
    /// The panels, in order.
    pub panels: Vec<Panel>,
}

/// A board as answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Board {
    /// Its name.
    pub name: String,
    /// When it was last saved, epoch ms.
    pub updated_at: i64,
    /// The board.
    #[serde(flatten)]
    pub spec: BoardSpec,
}

/// `{"boards": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BoardList {
    /// The tenant's boards, by name.
    pub boards: Vec<Board>,
}

fn board_of(record: BoardRecord) -> Result<Board, ApiError> {
    let spec = serde_json::from_str(&record.spec).map_err(|error| {
        ApiError::internal(sluice_store::StoreError::Invalid(format!(
            "stored board {:?} does not parse: {error}",
            record.name
        )))
    })?;
    Ok(Board {
        name: record.name,
        updated_at: record.updated_at,
        spec,
    })
}

/// The read key's tenant.
fn tenant_of(state: &BoardsState, headers: &HeaderMap) -> Result<Arc<str>, ApiError> {
    let grant = state.access.authorize(headers, Role::Read)?;
    grant
        .tenant()
        .cloned()
        .ok_or_else(|| ApiError::forbidden("this key belongs to no tenant"))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    check_tenant_name(name).map_err(|message| {
        ApiError::bad_request("invalid_name", message.replace("tenant", "board"))
    })
}

/// Every rule a board must keep; the first broken one, with what to change.
fn check_spec(spec: &BoardSpec, serving: &Serving) -> Result<(), ApiError> {
    let bad = |message: String| Err(ApiError::bad_request("invalid_board", message));
    if spec.panels.len() > MAX_PANELS {
        return bad(format!(
            "a board has at most {MAX_PANELS} panels, not {}",
            spec.panels.len()
        ));
    }
    if spec.title.as_ref().is_some_and(|t| t.chars().count() > 200) {
        return bad("title: at most 200 characters".into());
    }
    let metrics = serving.metrics();
    for (index, panel) in spec.panels.iter().enumerate() {
        let at = format!("panels[{index}]");
        let Some(metric) = metrics.iter().find(|m| m.name == panel.metric) else {
            return bad(format!("{at}.metric: no metric named {:?}", panel.metric));
        };
        if !metric.values.iter().any(|v| v.name == panel.value) {
            let names: Vec<&str> = metric.values.iter().map(|v| v.name.as_str()).collect();
            return bad(format!(
                "{at}.value: {:?} is not a value of {}; use one of {}",
                panel.value,
                metric.name,
                names.join(", ")
            ));
        }
        let choices: [(&str, &str, &[&str]); 4] = [
            ("range", &panel.range, &["1h", "24h", "7d"]),
            ("resolution", &panel.resolution, &["raw", "1h", "1d"]),
            ("chart", &panel.chart, &["line", "table"]),
            ("size", &panel.size, &["small", "medium", "large"]),
        ];
        for (field, value, allowed) in choices {
            if !allowed.contains(&value) {
                return bad(format!(
                    "{at}.{field}: {value:?} is not one of {}",
                    allowed.join(", ")
                ));
            }
        }
        if !(1..=100).contains(&panel.top) {
            return bad(format!("{at}.top: between 1 and 100, not {}", panel.top));
        }
        if panel.filters.len() > 16
            || panel
                .filters
                .iter()
                .any(|f| !f.contains(':') || f.len() > 256)
        {
            return bad(format!(
                "{at}.filters: at most 16 of \"key:value\", each at most 256 bytes"
            ));
        }
    }
    Ok(())
}

/// Lists the key's tenant's boards.
#[utoipa::path(get, path = "/v1/boards", operation_id = "list_boards", tag = "boards", security(("bearer" = [])),
    responses(
        (status = 200, description = "The boards", body = BoardList),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not a read key", body = crate::error::ErrorBody),
    ))]
async fn list_boards(
    State(state): State<Arc<BoardsState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    let records = state
        .access
        .store()
        .boards(&tenant)
        .await
        .map_err(ApiError::internal)?;
    let boards = records
        .into_iter()
        .map(board_of)
        .collect::<Result<_, _>>()?;
    Ok(Json(BoardList { boards }).into_response())
}

/// One board of the key's tenant.
#[utoipa::path(get, path = "/v1/boards/{name}", operation_id = "get_board", tag = "boards", security(("bearer" = [])),
    params(("name" = String, Path, description = "The board")),
    responses(
        (status = 200, description = "The board", body = Board),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not a read key", body = crate::error::ErrorBody),
        (status = 404, description = "No such board", body = crate::error::ErrorBody),
    ))]
async fn get_board(
    State(state): State<Arc<BoardsState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    let records = state
        .access
        .store()
        .boards(&tenant)
        .await
        .map_err(ApiError::internal)?;
    match records.into_iter().find(|record| record.name == name) {
        Some(record) => Ok(Json(board_of(record)?).into_response()),
        None => Err(ApiError::not_found(format!("no board named {name:?}"))),
    }
}

/// Saves a board of the key's tenant, replacing one of the same name.
#[utoipa::path(put, path = "/v1/boards/{name}", operation_id = "put_board", tag = "boards", security(("bearer" = [])),
    params(("name" = String, Path, description = "The board: 1-64 of a-z, 0-9, '-', '_'")),
    request_body = BoardSpec,
    responses(
        (status = 200, description = "The board as saved", body = Board),
        (status = 400, description = "Something is wrong: the message says what to change", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not a read key", body = crate::error::ErrorBody),
    ))]
async fn put_board(
    State(state): State<Arc<BoardsState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    check_name(&name)?;
    let spec: BoardSpec = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            "invalid_board",
            format!("the body must be {{\"title\"?, \"panels\": [{{\"metric\", \"value\", …}}]}}: {error}"),
        )
    })?;
    check_spec(&spec, &state.serving)?;
    let store = state.access.store();
    let existing = store.boards(&tenant).await.map_err(ApiError::internal)?;
    if existing.len() >= MAX_BOARDS && !existing.iter().any(|b| b.name == name) {
        return Err(ApiError::bad_request(
            "too_many_boards",
            format!("a tenant keeps at most {MAX_BOARDS} boards: delete one first"),
        ));
    }
    let record = BoardRecord {
        tenant: tenant.to_string(),
        name,
        spec: serde_json::to_string(&spec)
            .map_err(|e| ApiError::internal(sluice_store::StoreError::Invalid(e.to_string())))?,
        updated_at: now_millis(),
    };
    store
        .put_board(record.clone())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(board_of(record)?).into_response())
}

/// Deletes a board of the key's tenant.
#[utoipa::path(delete, path = "/v1/boards/{name}", operation_id = "delete_board", tag = "boards", security(("bearer" = [])),
    params(("name" = String, Path, description = "The board")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not a read key", body = crate::error::ErrorBody),
        (status = 404, description = "No such board", body = crate::error::ErrorBody),
    ))]
async fn delete_board(
    State(state): State<Arc<BoardsState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    let deleted = state
        .access
        .store()
        .delete_board(&tenant, &name)
        .await
        .map_err(ApiError::internal)?;
    if deleted {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no board named {name:?}")))
    }
}
