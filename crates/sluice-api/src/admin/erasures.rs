//! Erasure of a user (admin):
//! - `DELETE /v1/users/{id}?tenant=T`: from now on the collector drops every event of `T`
//!   whose user id or anonymous id is `id`, on every node (the list is in the store; other
//!   nodes of a cluster read it within a few seconds). The answer says what remains: events
//!   already stored stay in the log's topics until retention removes them, by
//!   `erased_at + log.retention-age` at the latest.
//! - `GET /v1/admin/erasures[?tenant=T]`: the erased ids.
//!
//! Erasing an id again is harmless and keeps its first time.

use crate::error::ApiError;
use crate::keys::Access;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use sluice_core::access::Role;
use sluice_core::erasure::ErasedUsers;
use sluice_core::time::{Millis, now_millis};
use sluice_log::LogBackend;
use sluice_pipelines::Pipelines;
use sluice_store::{ErasureRecord, StoreBackend};
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Longest id accepted (the collector's `limits.max-id-bytes` is far below).
const MAX_ID_BYTES: usize = 1024;

/// What the routes need.
#[derive(Debug)]
pub struct ErasuresState {
    /// Keys and tenants.
    pub access: Arc<Access>,
    /// Where erasures are kept.
    pub store: StoreBackend,
    /// The collector's copy of the erased ids.
    pub erased: Arc<ErasedUsers>,
    /// `log.retention-age` (`None`: kept until `retention-bytes` or forever).
    pub retention: Option<Duration>,
    /// The topics events of the user may be in: events, dead letters, late events (the derived
    /// streams' are added from `pipelines` at each erasure).
    pub topics: Vec<String>,
    /// The pipelines: the derived streams' topics may hold records of the user's events too.
    pub pipelines: Pipelines<LogBackend>,
}

/// The routes, with their OpenAPI description.
pub fn router(state: Arc<ErasuresState>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(erase_user))
        .routes(routes!(list_erasures))
        .with_state(state)
}

/// `?tenant=T`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantQuery {
    /// The tenant.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// An erased id.
#[derive(Debug, Serialize, ToSchema)]
pub struct Erasure {
    /// The tenant.
    pub tenant: String,
    /// The user id or anonymous id.
    pub id: String,
    /// When it was first erased (epoch ms).
    pub erased_at: Millis,
}

/// What an erasure did and what remains.
#[derive(Debug, Serialize, ToSchema)]
pub struct Erased {
    /// The erasure, as stored (an id erased before keeps its first time).
    #[serde(flatten)]
    pub erasure: Erasure,
    /// Whether the id was erased before this request.
    pub already_erased: bool,
    /// What the log still holds.
    pub remaining: Remaining,
}

/// Events of the user stored before the erasure.
#[derive(Debug, Serialize, ToSchema)]
pub struct Remaining {
    /// The topics they may be in.
    pub topics: Vec<String>,
    /// By when retention has removed them (epoch ms; `null` without `log.retention-age`).
    pub removed_by: Option<Millis>,
    /// The same, in words.
    pub note: String,
}

/// `{"erasures": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Erasures {
    /// By tenant, then id.
    pub erasures: Vec<Erasure>,
}

fn tenant_of(
    query: Result<Query<TenantQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Option<String>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request("invalid_query", format!("tenant=NAME: {rejection}"))
    })?;
    Ok(query.tenant)
}

/// Erases a user: their future events are dropped at the collector.
#[utoipa::path(delete, path = "/v1/users/{id}", operation_id = "erase_user", tag = "admin", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The user id or anonymous id"),
        ("tenant" = String, Query, description = "The tenant it belongs to"),
    ),
    responses(
        (status = 200, description = "Erased; what the log still holds", body = Erased),
        (status = 400, description = "No tenant, or an empty or too long id", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 503, description = "The store cannot be written now", body = crate::error::ErrorBody),
    ))]
async fn erase_user(
    State(state): State<Arc<ErasuresState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<TenantQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Erased>, ApiError> {
    state.access.authorize(&headers, Role::Admin)?;
    let Some(tenant) = tenant_of(query)? else {
        return Err(ApiError::bad_request(
            "invalid_query",
            "name the user's tenant: DELETE /v1/users/{id}?tenant=NAME",
        ));
    };
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(ApiError::bad_request(
            "invalid_id",
            format!("the id must be 1 to {MAX_ID_BYTES} bytes"),
        ));
    }
    if state
        .access
        .tenant(&tenant)
        .await
        .map_err(ApiError::internal)?
        .is_none()
    {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_tenant",
            format!("no tenant {tenant:?}"),
        ));
    }
    let now = now_millis();
    let stored = state
        .store
        .erase(ErasureRecord {
            tenant: tenant.clone(),
            id: id.clone(),
            erased_at: now,
        })
        .await
        .map_err(ApiError::internal)?;
    state.erased.insert(&tenant, &id);
    tracing::info!(%tenant, "a user was erased: their events are dropped from now on");
    let mut topics = state.topics.clone();
    let mut streams: Vec<String> = state
        .pipelines
        .plans()
        .into_iter()
        .filter(|(plan, _)| plan.is_stream())
        .map(|(plan, _)| plan.name.clone())
        .collect();
    streams.sort();
    topics.extend(streams);
    let removed_by = state
        .retention
        .map(|age| stored.erased_at.saturating_add(age.as_millis() as Millis));
    let note = match removed_by {
        Some(_) => format!(
            "events of this id stored before the erasure stay in {} until retention removes them (log.retention-age {})",
            topics.join(", "),
            sluice_core::config::HumanDuration(state.retention.unwrap_or_default())
        ),
        None => format!(
            "events of this id stored before the erasure stay in {}: log.retention-age is off, so only retention-bytes removes them",
            topics.join(", ")
        ),
    };
    Ok(Json(Erased {
        already_erased: stored.erased_at != now,
        erasure: Erasure {
            tenant: stored.tenant,
            id: stored.id,
            erased_at: stored.erased_at,
        },
        remaining: Remaining {
            topics,
            removed_by,
            note,
        },
    }))
}

/// The erased ids, of one tenant or all.
#[utoipa::path(get, path = "/v1/admin/erasures", operation_id = "list_erasures", tag = "admin", security(("bearer" = [])),
    params(("tenant" = Option<String>, Query, description = "Only this tenant's")),
    responses(
        (status = 200, description = "The erased ids", body = Erasures),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
        (status = 503, description = "The store cannot be read now", body = crate::error::ErrorBody),
    ))]
async fn list_erasures(
    State(state): State<Arc<ErasuresState>>,
    headers: HeaderMap,
    query: Result<Query<TenantQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Erasures>, ApiError> {
    state.access.authorize(&headers, Role::Admin)?;
    let tenant = tenant_of(query)?;
    let erasures = state
        .store
        .erasures()
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .filter(|record| {
            tenant
                .as_ref()
                .is_none_or(|tenant| *tenant == record.tenant)
        })
        .map(|record| Erasure {
            tenant: record.tenant,
            id: record.id,
            erased_at: record.erased_at,
        })
        .collect();
    Ok(Json(Erasures { erasures }))
}

/// Until `stop`: every `every`, the collector's copy of the erased ids is read again from the
/// store (other nodes of a cluster erase too).
pub async fn follow_store(
    store: StoreBackend,
    erased: Arc<ErasedUsers>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match store.erasures().await {
            Ok(records) => erased.replace(records.into_iter().map(|r| (r.tenant, r.id))),
            Err(error) => tracing::warn!(%error, "reading the erased users failed; retrying"),
        }
    }
}
