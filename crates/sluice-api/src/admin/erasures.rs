//! Users: their profiles (read key) and their erasure (admin):
//! - `GET /v1/users/{id}[?identity=NAME]`: the person `id` resolves to, as an identity
//!   (`CREATE IDENTITY`) knows them (see [`crate::query::profiles`]); 404 for an erased id.
//! - `DELETE /v1/users/{id}?tenant=T`: from now on the collector drops every event of `T`
//!   whose user id or anonymous id is `id`, on every node (the list is in the store; other
//!   nodes of a cluster read it within a few seconds), and identities skip the events of `id`
//!   still in the log and delete its profile, links and aliases at their next checkpoint. The
//!   answer says what remains: events already stored stay in the log's topics until retention
//!   removes them, by `erased_at + log.retention-age` at the latest.
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
pub const MAX_ID_BYTES: usize = 1024;

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
    /// The pipelines: the derived streams' topics may hold records of the user's events too;
    /// the identities keep profiles.
    pub pipelines: Pipelines<LogBackend>,
    /// The most rows one read loads (`api.max-store-rows`).
    pub max_store_rows: usize,
    /// Where the raw event archive is, when it is enabled.
    pub archive: Option<String>,
}

/// The routes, with their OpenAPI description.
pub fn router(state: Arc<ErasuresState>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_user, erase_user))
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
    /// When the raw event archive is enabled: what it keeps of the user, and how to remove it.
    pub archive: Option<String>,
}

/// `{"erasures": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Erasures {
    /// By tenant, then id.
    pub erasures: Vec<Erasure>,
}

/// `?identity=NAME&tenant=T`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileQuery {
    /// The identity to read (needed only when several are defined).
    #[serde(default)]
    pub identity: Option<String>,
    /// The tenant (admin keys only; a read key reads its own).
    #[serde(default)]
    pub tenant: Option<String>,
}

/// A person's profile: traits, first and last seen, events, linked anonymous ids.
#[utoipa::path(get, path = "/v1/users/{id}", operation_id = "get_user", tag = "query", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "A user id, or an anonymous id or previous id that resolves to one"),
        ("identity" = Option<String>, Query, description = "The identity (CREATE IDENTITY) to read, when several are defined"),
        ("tenant" = Option<String>, Query, description = "The tenant, for an admin key"),
    ),
    responses(
        (status = 200, description = "The profile, as of the last checkpoint", body = crate::query::profiles::Profile),
        (status = 400, description = "Several identities and none named, a bad id or query", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not a read or admin key, or another tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No identity, no such user, or an erased one", body = crate::error::ErrorBody),
        (status = 503, description = "The store cannot be read now", body = crate::error::ErrorBody),
    ))]
async fn get_user(
    State(state): State<Arc<ErasuresState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<ProfileQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::query::profiles::Profile>, ApiError> {
    let grant = state
        .access
        .authorize_roles(&headers, &[Role::Read, Role::Admin])?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(
            "invalid_query",
            format!("identity=NAME, tenant=NAME: {rejection}"),
        )
    })?;
    let tenant = match (grant.tenant(), query.tenant) {
        (Some(own), Some(asked)) if own.as_ref() != asked.as_str() => {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                "a read key reads its own tenant only: leave tenant= out",
            ));
        }
        (Some(own), _) => own.to_string(),
        (None, Some(asked)) => asked,
        (None, None) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "an admin key names the tenant: GET /v1/users/{id}?tenant=NAME",
            ));
        }
    };
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(ApiError::bad_request(
            "invalid_id",
            format!("the id must be 1 to {MAX_ID_BYTES} bytes"),
        ));
    }
    if state.erased.any_erased(&tenant, [id.as_str()]) {
        return Err(ApiError::not_found(format!(
            "{id:?} was erased (DELETE /v1/users/{{id}}): its profile is deleted"
        )));
    }
    let identities: Vec<_> = state
        .pipelines
        .plans()
        .into_iter()
        .filter(|(plan, _)| plan.output == sluice_stream::plan::Output::Identity)
        .collect();
    let chosen = match (&query.identity, identities.as_slice()) {
        (Some(name), _) => identities.iter().find(|(plan, _)| plan.name == *name).ok_or_else(|| {
            ApiError::not_found(format!(
                "no identity named {name:?}: GET /v1/admin/metrics lists definitions (kind identity)"
            ))
        })?,
        (None, [only]) => only,
        (None, []) => {
            return Err(ApiError::not_found(
                "no identity is defined: create one (CREATE IDENTITY people) to keep profiles",
            ));
        }
        (None, several) => {
            let names: Vec<&str> = several.iter().map(|(plan, _)| plan.name.as_str()).collect();
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("name the identity to read: ?identity= one of {}", names.join(", ")),
            ));
        }
    };
    let (plan, generation) = chosen;
    let mut profile = crate::query::profiles::read(
        &state.store,
        (plan, *generation),
        &tenant,
        &id,
        state.max_store_rows,
    )
    .await?
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "identity {:?} has seen no event of {id:?} in tenant {tenant:?} (profiles are read as of the last checkpoint, store.checkpoint-interval)",
            plan.name
        ))
    })?;
    // Ids erased since the identities' last checkpoint are not shown either.
    let erased = |id: &String| state.erased.any_erased(&tenant, [id.as_str()]);
    profile.anonymous_ids.retain(|id| !erased(id));
    profile.merged_ids.retain(|id| !erased(id));
    Ok(Json(profile))
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
        .flat_map(|(plan, _)| {
            let changes = (plan.output == sluice_stream::plan::Output::Identity)
                .then(|| sluice_stream::identity::changes_topic(&plan.name));
            std::iter::once(plan.name.clone()).chain(changes)
        })
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
    let archive = state.archive.as_ref().map(|location| {
        format!(
            "events of this id archived before the erasure stay in the archive at {location} until `sluice archive forget --tenant {} --user {}` removes them; those still in the log are not archived from now on",
            stored.tenant, stored.id
        )
    });
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
            archive,
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
