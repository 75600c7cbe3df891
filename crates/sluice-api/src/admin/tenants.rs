//! `/v1/admin/tenants` and `/v1/admin/keys`: create tenants, set their limits, and create and
//! revoke write, read and admin keys. Every route needs an admin key. A new key's secret is in
//! the creation answer only: the store keeps its SHA-256.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/admin/tenants` `{"name", "requests_per_second"?, "events_per_day"?}` | 201 tenant; 409 `exists` |
//! | `GET /v1/admin/tenants` | 200 `{"tenants": [tenant…]}` (the config's and the API's) |
//! | `GET /v1/admin/tenants/{name}` | 200 tenant; 404 |
//! | `PATCH /v1/admin/tenants/{name}` `{"requests_per_second": n \| null, …}` | 200 tenant (`null`: back to `[quotas]`); 409 for config tenants |
//! | `DELETE /v1/admin/tenants/{name}` | 204, its keys revoked; 409 for config tenants |
//! | `POST /v1/admin/keys` `{"role", "tenant"?, "label"?}` | 201 key with its `secret` |
//! | `GET /v1/admin/keys[?tenant=NAME]` | 200 `{"keys": [key…]}` without secrets |
//! | `DELETE /v1/admin/keys/{id}` | 204; 404; 409 for keys of the config |

use crate::error::ApiError;
use crate::keys::{Access, TenantOrigin, TenantView};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Deserializer, Serialize};
use sluice_core::access::{Role, digest};
use sluice_core::tenant::check_tenant_name;
use sluice_core::time::now_millis;
use sluice_store::{KeyRecord, TenantRecord};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the tenant and key routes need.
#[derive(Debug)]
pub struct TenantsState {
    /// The key directory and store.
    pub access: Arc<Access>,
    /// Most tenants the API may create.
    pub max_tenants: usize,
    /// Most keys the API may create.
    pub max_keys: usize,
}

/// The tenant and key routes, with their OpenAPI description.
pub fn router(state: Arc<TenantsState>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant, update_tenant, delete_tenant))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(delete_key))
        .with_state(state)
}

/// `POST /v1/admin/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// 1 to 64 lowercase letters, digits, `-` or `_`.
    pub name: String,
    /// Requests per second per key (unset: `[quotas]`; 0: no limit).
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    /// Events per UTC day per write key (unset: `[quotas]`; 0: no limit).
    #[serde(default)]
    pub events_per_day: Option<u64>,
}

/// `PATCH /v1/admin/tenants/{name}`: fields left out keep their value, `null` means the
/// `[quotas]` default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// Requests per second per key.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub requests_per_second: Option<Option<u32>>,
    /// Events per UTC day per write key.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub events_per_day: Option<Option<u64>>,
}

fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST /v1/admin/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// `write`, `read` or `admin`.
    #[schema(value_type = String, example = "read")]
    pub role: Role,
    /// The tenant of a write or read key (admin keys have none).
    #[serde(default)]
    pub tenant: Option<String>,
    /// A label to recognise the key by (at most 100 characters).
    #[serde(default)]
    pub label: Option<String>,
}

/// A key as listed (never with its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// Public id, for revoking.
    pub id: String,
    /// What it may do: `write`, `read` or `admin`.
    #[schema(value_type = String)]
    pub role: Role,
    /// Its tenant (`null` for admin keys).
    pub tenant: Option<String>,
    /// The secret's first characters.
    pub hint: String,
    /// The label given at creation.
    pub label: String,
    /// `config` or `api`.
    pub origin: TenantOrigin,
    /// When it was created (API keys).
    pub created_at: Option<i64>,
}

/// A created key: the only answer that carries its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key.
    #[serde(flatten)]
    pub key: KeyView,
    /// The secret: send it as `Authorization: Bearer …` (read, admin) or as the write key.
    pub secret: String,
}

/// `{"tenants": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    /// Every tenant: the config's, then the API's.
    pub tenants: Vec<TenantView>,
}

/// `{"keys": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// The keys, without secrets.
    pub keys: Vec<KeyView>,
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], example: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request("invalid_body", format!("expected {example}: {error}"))
    })
}

/// Creates a tenant.
#[utoipa::path(post, path = "/v1/admin/tenants", tag = "admin",
    security(("bearer" = [])), request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = TenantView),
        (status = 400, description = "Invalid body or name", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
        (status = 409, description = "The name exists, or api.max-tenants is reached", body = crate::error::ErrorBody),
    ))]
async fn create_tenant(
    State(state): State<Arc<TenantsState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    state.access.authorize(&headers, Role::Admin)?;
    let request: CreateTenant = parse_body(
        &body,
        r#"{"name": "shop", "requests_per_second": 100, "events_per_day": 1000000}"#,
    )?;
    check_tenant_name(&request.name)
        .map_err(|reason| ApiError::bad_request("invalid_name", reason))?;
    let access = &state.access;
    let _guard = access.lock().await;
    if access.is_configured(&request.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("tenant {:?} is defined in the config file", request.name),
        ));
    }
    if access.store().tenants().await?.len() >= state.max_tenants {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many",
            format!(
                "there are {} tenants, the most api.max-tenants allows; delete one or raise the limit",
                state.max_tenants
            ),
        ));
    }
    access
        .store()
        .create_tenant(TenantRecord {
            name: request.name.clone(),
            created_at: now_millis(),
            requests_per_second: request.requests_per_second,
            events_per_day: request.events_per_day,
        })
        .await?;
    access.rebuild().await?;
    let tenant = access.tenant(&request.name).await?;
    Ok((StatusCode::CREATED, Json(tenant)).into_response())
}

/// Lists every tenant, the config's and the API's.
#[utoipa::path(get, path = "/v1/admin/tenants", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenants", body = TenantList),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
    ))]
async fn list_tenants(
    State(state): State<Arc<TenantsState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.access.authorize(&headers, Role::Admin)?;
    let tenants = state.access.tenants().await?;
    Ok(Json(TenantList { tenants }).into_response())
}

async fn find_tenant(access: &Access, name: &str) -> Result<TenantView, ApiError> {
    access
        .tenant(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no tenant named {name:?}")))
}

/// Describes one tenant.
#[utoipa::path(get, path = "/v1/admin/tenants/{name}", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
    ))]
async fn get_tenant(
    State(state): State<Arc<TenantsState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.access.authorize(&headers, Role::Admin)?;
    Ok(Json(find_tenant(&state.access, &name).await?).into_response())
}

fn config_conflict(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "configured",
        format!("tenant {name:?} is defined in the config file: change it there"),
    )
}

/// Changes an API tenant's limits (`null`: back to `[quotas]`).
#[utoipa::path(patch, path = "/v1/admin/tenants/{name}", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path, description = "Tenant name")), request_body = UpdateTenant,
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 400, description = "Invalid body", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 409, description = "A tenant of the config file", body = crate::error::ErrorBody),
    ))]
async fn update_tenant(
    State(state): State<Arc<TenantsState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    state.access.authorize(&headers, Role::Admin)?;
    let request: UpdateTenant = parse_body(
        &body,
        r#"{"requests_per_second": 100, "events_per_day": null}"#,
    )?;
    let access = &state.access;
    let _guard = access.lock().await;
    let current = find_tenant(access, &name).await?;
    if current.origin == TenantOrigin::Config {
        return Err(config_conflict(&name));
    }
    let requests = request
        .requests_per_second
        .unwrap_or(current.requests_per_second);
    let events = request.events_per_day.unwrap_or(current.events_per_day);
    if !access
        .store()
        .set_tenant_limits(&name, requests, events)
        .await?
    {
        return Err(ApiError::not_found(format!("no tenant named {name:?}")));
    }
    access.rebuild().await?;
    Ok(Json(find_tenant(access, &name).await?).into_response())
}

/// Deletes an API tenant and revokes its keys.
#[utoipa::path(delete, path = "/v1/admin/tenants/{name}", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path, description = "Tenant name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 409, description = "A tenant of the config file", body = crate::error::ErrorBody),
    ))]
async fn delete_tenant(
    State(state): State<Arc<TenantsState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.access.authorize(&headers, Role::Admin)?;
    let access = &state.access;
    let _guard = access.lock().await;
    if access.is_configured(&name) {
        return Err(config_conflict(&name));
    }
    if !access.store().delete_tenant(&name).await? {
        return Err(ApiError::not_found(format!("no tenant named {name:?}")));
    }
    access.rebuild().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Creates a write, read or admin key; the answer is the only place its secret appears.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin", security(("bearer" = [])),
    request_body = CreateKey,
    responses(
        (status = 201, description = "Created, with its secret", body = CreatedKey),
        (status = 400, description = "Invalid body", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 409, description = "api.max-keys is reached", body = crate::error::ErrorBody),
    ))]
async fn create_key(
    State(state): State<Arc<TenantsState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    state.access.authorize(&headers, Role::Admin)?;
    let request: CreateKey = parse_body(
        &body,
        r#"{"role": "read", "tenant": "shop", "label": "dashboard"}"#,
    )?;
    let label = request.label.unwrap_or_default();
    if label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_label",
            "label must be at most 100 characters without control characters",
        ));
    }
    match (request.role, &request.tenant) {
        (Role::Admin, Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "admin keys belong to no tenant: leave \"tenant\" out",
            ));
        }
        (Role::Read | Role::Write | Role::Schema | Role::Alerts, None) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "write, read, schema and alerts keys belong to a tenant: add \"tenant\": \"NAME\"",
            ));
        }
        _ => {}
    }
    let access = &state.access;
    let _guard = access.lock().await;
    if let Some(tenant) = &request.tenant {
        find_tenant(access, tenant).await?;
    }
    if access.store().keys().await?.len() >= state.max_keys {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many",
            format!(
                "there are {} keys, the most api.max-keys allows; revoke some or raise the limit",
                state.max_keys
            ),
        ));
    }
    let (secret, id) = {
        let mut rng = rand::rng();
        (
            format!(
                "{}{}",
                request.role.secret_prefix(),
                Alphanumeric.sample_string(&mut rng, 32)
            ),
            format!("key_{}", Alphanumeric.sample_string(&mut rng, 16)),
        )
    };
    let record = KeyRecord {
        id,
        tenant: request.tenant,
        role: request.role,
        digest: digest(&secret),
        hint: secret.chars().take(6).collect(),
        label,
        created_at: now_millis(),
    };
    access.store().create_key(record.clone()).await?;
    access.rebuild().await?;
    let created = CreatedKey {
        key: key_view(record),
        secret,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

fn key_view(record: KeyRecord) -> KeyView {
    KeyView {
        id: record.id,
        role: record.role,
        tenant: record.tenant,
        hint: record.hint,
        label: record.label,
        origin: TenantOrigin::Api,
        created_at: Some(record.created_at),
    }
}

/// `GET /v1/admin/keys` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KeyFilter {
    /// Only this tenant's keys (`null` in a key's `tenant` means admin keys).
    pub tenant: Option<String>,
}

/// Lists keys (of the config and the API), never their secrets.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin", security(("bearer" = [])),
    params(KeyFilter),
    responses(
        (status = 200, description = "The keys", body = KeyList),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
    ))]
async fn list_keys(
    State(state): State<Arc<TenantsState>>,
    headers: HeaderMap,
    Query(filter): Query<KeyFilter>,
) -> Result<Response, ApiError> {
    state.access.authorize(&headers, Role::Admin)?;
    let access = &state.access;
    let mut keys: Vec<KeyView> = Vec::new();
    let configured_tenants: Vec<Option<String>> = match &filter.tenant {
        Some(name) => vec![Some(name.clone())],
        None => {
            let mut all: Vec<Option<String>> = vec![None];
            all.extend(
                access
                    .tenants()
                    .await?
                    .into_iter()
                    .filter(|t| t.origin == TenantOrigin::Config)
                    .map(|t| Some(t.name)),
            );
            all
        }
    };
    for tenant in configured_tenants {
        for (id, role, hint) in access.configured_keys(tenant.as_deref()) {
            keys.push(KeyView {
                id,
                role,
                tenant: tenant.clone(),
                hint,
                label: "config".into(),
                origin: TenantOrigin::Config,
                created_at: None,
            });
        }
    }
    keys.extend(
        access
            .store()
            .keys()
            .await?
            .into_iter()
            .filter(|key| filter.tenant.is_none() || key.tenant == filter.tenant)
            .map(key_view),
    );
    Ok(Json(KeyList { keys }).into_response())
}

/// Revokes a key at once.
#[utoipa::path(delete, path = "/v1/admin/keys/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = crate::error::ErrorBody),
        (status = 404, description = "No such key", body = crate::error::ErrorBody),
        (status = 409, description = "A key of the config file", body = crate::error::ErrorBody),
    ))]
async fn delete_key(
    State(state): State<Arc<TenantsState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.access.authorize(&headers, Role::Admin)?;
    if id.starts_with("cfg_") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "configured",
            "this key is in the config file: remove it there",
        ));
    }
    let access = &state.access;
    let _guard = access.lock().await;
    if !access.store().delete_key(&id).await? {
        return Err(ApiError::not_found(format!("no key with id {id:?}")));
    }
    access.rebuild().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
