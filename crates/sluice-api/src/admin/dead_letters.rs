//! `GET /v1/admin/dead-letters[?limit=N&tenant=T]`: the latest events the collector refused,
//! newest first, each as the collector wrote it to the dead-letter topic (tenant, time,
//! endpoint, batch index, field path, reason, message, schema violations, the raw input) with
//! its partition and offset. Read from the end of each partition of the topic: at most
//! `limit` (default 50, at most 500) records per partition are read, so the answer costs the
//! same however long the topic is.

use crate::error::ApiError;
use crate::keys::Access;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::access::Role;
use sluice_log::{Log, LogBackend, ReadOptions};
use std::sync::{Arc, Weak};
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The most dead letters one answer holds.
pub const MAX_LIMIT: usize = 500;

/// What the route needs.
#[derive(Debug)]
pub struct DeadLettersState {
    /// Keys.
    pub access: Arc<Access>,
    /// The log. Weak: the app closes the log at shutdown once it holds the only strong
    /// reference, and a router that outlives a request must not keep it open.
    pub log: Weak<LogBackend>,
    /// `ingest.dead-letter-topic`.
    pub topic: String,
}

/// The route, with its OpenAPI description.
pub fn router(state: Arc<DeadLettersState>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(dead_letters))
        .with_state(state)
}

/// The query string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// How many (default 50).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only this tenant's.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// `{"dead_letters": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetters {
    /// Newest first: each the collector's dead letter with `partition` and `offset` added.
    pub dead_letters: Vec<Value>,
}

/// The latest refused events, newest first.
#[utoipa::path(get, path = "/v1/admin/dead-letters", operation_id = "list_dead_letters", tag = "admin", security(("bearer" = [])),
    params(
        ("limit" = Option<usize>, Query, description = "How many, newest first (default 50, at most 500)"),
        ("tenant" = Option<String>, Query, description = "Only this tenant's"),
    ),
    responses(
        (status = 200, description = "The latest dead letters", body = DeadLetters),
        (status = 400, description = "A parameter is wrong", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
        (status = 503, description = "The log cannot be read now", body = crate::error::ErrorBody),
    ))]
async fn dead_letters(
    State(state): State<Arc<DeadLettersState>>,
    headers: HeaderMap,
    query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    state.access.authorize(&headers, Role::Admin)?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(
            "invalid_query",
            format!("limit=N (1 to {MAX_LIMIT}) and tenant=NAME: {rejection}"),
        )
    })?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit is 1 to {MAX_LIMIT}, not {limit}"),
        ));
    }
    let Some(log) = state.log.upgrade() else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "sluice is stopping; the log is closed",
        ));
    };
    let topics = log
        .describe(Some(&state.topic))
        .await
        .map_err(ApiError::internal)?;
    let mut letters = Vec::new();
    for partition in topics.iter().flat_map(|t| &t.partitions) {
        let mut offset = partition
            .end_offset
            .saturating_sub(limit as u64)
            .max(partition.start_offset);
        while offset < partition.end_offset {
            let options = ReadOptions {
                max_bytes: 4 << 20,
                max_wait: Duration::ZERO,
            };
            let batch = log
                .read(&state.topic, partition.partition, offset, options)
                .await
                .map_err(ApiError::internal)?;
            let Some(last) = batch.records.last() else {
                break;
            };
            offset = last.offset + 1;
            for stored in batch.records {
                let Ok(Value::Object(mut letter)) = serde_json::from_slice(&stored.record.value)
                else {
                    continue;
                };
                if query.tenant.as_ref().is_some_and(|tenant| {
                    letter.get("tenant").and_then(Value::as_str) != Some(tenant)
                }) {
                    continue;
                }
                letter.insert("partition".into(), partition.partition.into());
                letter.insert("offset".into(), stored.offset.into());
                letters.push(Value::Object(letter));
            }
        }
    }
    let received = |letter: &Value| letter["received_at"].as_i64().unwrap_or(0);
    letters.sort_by_key(|letter| std::cmp::Reverse(received(letter)));
    letters.truncate(limit);
    Ok(Json(DeadLetters {
        dead_letters: letters,
    })
    .into_response())
}
