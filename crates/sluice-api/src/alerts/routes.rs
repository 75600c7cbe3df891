//! `/v1/alerts…`: alert states, their history, rules, silences and channel tests.
//!
//! A tenant's read key reads its tenant's alerts; an alerts key (`POST /v1/admin/keys
//! {"role": "alerts", "tenant": …}`) reads them too and manages its tenant's rules and
//! silences; an admin key does everything for any tenant, naming it with `?tenant=NAME`
//! (reads without it cover every tenant).
//!
//! | route | key | answer |
//! |---|---|---|
//! | `GET /v1/alerts[?state=firing]` | read | 200 `{"alerts": [{rule, metric, key, state, severity}…], "rules": [{name, metric, error?}…]}` |
//! | `GET /v1/alerts/history[?rule&state&before&limit]` | read | 200 `{"notifications": […]}`, newest first |
//! | `GET /v1/alerts/rules` | read | 200 `{"rules": [rule…]}` |
//! | `POST /v1/alerts/rules` `{"sql", "channels"?}` | alerts | 201 rule (200 if unchanged); 400 `invalid_sql` with `line`/`column`, `unknown_channel` |
//! | `DELETE /v1/alerts/rules/{name}` | alerts | 204; 404 |
//! | `GET /v1/alerts/silences` | read | 200 `{"silences": […]}` |
//! | `POST /v1/alerts/silences` `{"rule"?, "key"?, "from"?, "to"? or "duration"?, "comment"?}` | alerts | 201 silence |
//! | `DELETE /v1/alerts/silences/{id}` | alerts | 204; 404 |
//! | `GET /v1/alerts/channels` | read | 200 `{"channels": [{name, kind, url}…]}` (no secrets) |
//! | `POST /v1/alerts/channels/{name}/test` | alerts | 200 `{"delivered": true, "id"}`; 502 with the receiver's answer |

use super::{Alerting, ORIGIN_API, ORIGIN_CONFIG};
use crate::error::ApiError;
use crate::keys::Access;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sluice_core::access::Role;
use sluice_core::config::HumanDuration;
use sluice_core::time::{Millis, now_millis, parse_rfc3339_millis};
use sluice_store::{DeliveryState, NotificationQuery, SilenceRecord};
use std::collections::HashMap;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The most silences a tenant keeps.
pub const MAX_SILENCES: usize = 1000;

/// The most key fields a silence names.
pub const MAX_SILENCE_KEY_FIELDS: usize = 32;

/// The most notifications one history read returns.
pub const MAX_HISTORY: usize = 1000;

/// What the alert routes need.
#[derive(Debug)]
pub struct AlertsState {
    /// Keys.
    pub access: Arc<Access>,
    /// The alerting service.
    pub alerting: Arc<Alerting>,
}

/// The alert routes, with their OpenAPI description.
pub fn router(state: Arc<AlertsState>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_alerts))
        .routes(routes!(history))
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(delete_rule))
        .routes(routes!(list_silences, create_silence))
        .routes(routes!(delete_silence))
        .routes(routes!(list_channels))
        .routes(routes!(test_channel))
        .with_state(state)
}

/// Whose alerts a request is about: the key's tenant, or for an admin key `?tenant=` (`None`:
/// every tenant, for reads).
fn scope(
    state: &AlertsState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    write: bool,
) -> Result<Option<String>, ApiError> {
    let roles: &[Role] = if write {
        &[Role::Alerts, Role::Admin]
    } else {
        &[Role::Read, Role::Alerts, Role::Admin]
    };
    let grant = state.access.authorize_roles(headers, roles)?;
    match (grant.tenant(), params.get("tenant")) {
        (Some(own), None) => Ok(Some(own.to_string())),
        (Some(own), Some(asked)) if **own == **asked => Ok(Some(own.to_string())),
        (Some(_), Some(_)) => Err(ApiError::forbidden(
            "this key reads and manages its own tenant's alerts only: leave ?tenant= out",
        )),
        (None, Some(asked)) => Ok(Some(asked.clone())),
        (None, None) if write => Err(ApiError::bad_request(
            "missing_tenant",
            "an admin key names the tenant: add ?tenant=NAME",
        )),
        (None, None) => Ok(None),
    }
}

fn tenant_required(tenant: Option<String>) -> Result<String, ApiError> {
    tenant.ok_or_else(|| ApiError::bad_request("missing_tenant", "add ?tenant=NAME"))
}

/// Alert instances and their states, as last committed.
#[utoipa::path(get, path = "/v1/alerts", operation_id = "list_alerts", tag = "alerts", security(("bearer" = [])),
    params(("state" = Option<String>, Query, description = "Only instances in this state: ok, pending, firing, resolved"),
           ("tenant" = Option<String>, Query, description = "Admin keys: the tenant")),
    responses(
        (status = 200, description = "`{\"alerts\": [instance…], \"rules\": [{name, metric, error?}…]}`", body = serde_json::Value),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
    ))]
async fn list_alerts(
    State(state): State<Arc<AlertsState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let tenant = scope(&state, &headers, &params, false)?;
    let wanted = params.get("state").map(String::as_str);
    if let Some(wanted) = wanted
        && !matches!(wanted, "ok" | "pending" | "firing" | "resolved")
    {
        return Err(ApiError::bad_request(
            "invalid_state",
            format!("state={wanted:?}: use ok, pending, firing or resolved"),
        ));
    }
    let all = state.alerting.instances(tenant.as_deref()).await?;
    let mut alerts = Vec::new();
    let mut rules = Vec::new();
    for (rule, instances, error) in all {
        let mut listed = json!({"tenant": rule.tenant, "name": rule.name, "metric": rule.metric});
        if let Some(error) = error {
            listed["error"] = error.into();
        }
        rules.push(listed);
        alerts.extend(
            instances
                .into_iter()
                .filter(|instance| wanted.is_none_or(|wanted| instance.state == wanted))
                .map(|instance| {
                    let mut value = serde_json::to_value(&instance).unwrap_or_default();
                    value["tenant"] = rule.tenant.clone().into();
                    value
                }),
        );
    }
    Ok(Json(json!({ "alerts": alerts, "rules": rules })).into_response())
}

/// Notifications, newest first: every transition, its channel and delivery state.
#[utoipa::path(get, path = "/v1/alerts/history", operation_id = "alert_history", tag = "alerts", security(("bearer" = [])),
    params(("rule" = Option<String>, Query, description = "Only this rule's"),
           ("state" = Option<String>, Query, description = "pending, delivered, dead or silenced"),
           ("before" = Option<String>, Query, description = "Only those created before this (RFC 3339 or epoch ms): the next page"),
           ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1000)"),
           ("tenant" = Option<String>, Query, description = "Admin keys: the tenant")),
    responses(
        (status = 200, description = "`{\"notifications\": [{id, channel, rule, status, state, attempts, next_attempt, last_error, created_at, updated_at, notification}…]}`", body = serde_json::Value),
        (status = 400, description = "A bad parameter", body = crate::error::ErrorBody),
    ))]
async fn history(
    State(state): State<Arc<AlertsState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let tenant = scope(&state, &headers, &params, false)?;
    let delivery = match params.get("state") {
        None => None,
        Some(text) => Some(DeliveryState::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_state",
                format!("state={text:?}: use pending, delivered, dead or silenced"),
            )
        })?),
    };
    let limit = match params.get("limit") {
        None => NotificationQuery::DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_HISTORY).contains(limit))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_limit",
                    format!("limit={text:?}: use a number from 1 to {MAX_HISTORY}"),
                )
            })?,
    };
    let before = params
        .get("before")
        .map(|text| time_param("before", text))
        .transpose()?;
    let rows = state
        .alerting
        .store
        .notifications(NotificationQuery {
            tenant,
            rule: params.get("rule").cloned(),
            state: delivery,
            before,
            limit,
        })
        .await?;
    let notifications: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|row| {
            json!({
                "id": row.id,
                "tenant": row.tenant,
                "rule": row.rule,
                "channel": (!row.channel.is_empty()).then_some(row.channel),
                "status": row.status,
                "state": row.state.as_str(),
                "attempts": row.attempts,
                "next_attempt": (row.state == DeliveryState::Pending).then_some(row.next_attempt),
                "last_error": row.last_error,
                "created_at": row.created_at,
                "updated_at": row.updated_at,
                "notification": serde_json::from_str::<serde_json::Value>(&row.payload).unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(json!({ "notifications": notifications })).into_response())
}

/// A time parameter: RFC 3339 or epoch milliseconds.
fn time_param(name: &str, text: &str) -> Result<Millis, ApiError> {
    text.parse::<Millis>()
        .ok()
        .or_else(|| parse_rfc3339_millis(text).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_time",
                format!(
                    "{name}={text:?}: use RFC 3339 (2026-12-07T10:00:00Z) or epoch milliseconds"
                ),
            )
        })
}

/// The tenant's rules.
#[utoipa::path(get, path = "/v1/alerts/rules", operation_id = "list_alert_rules", tag = "alerts", security(("bearer" = [])),
    params(("tenant" = Option<String>, Query, description = "Admin keys: the tenant")),
    responses((status = 200, description = "`{\"rules\": [{id, tenant, name, metric, sql, channels, origin, created_at}…]}`", body = serde_json::Value)))]
async fn list_rules(
    State(state): State<Arc<AlertsState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let tenant = scope(&state, &headers, &params, false)?;
    let rules: Vec<_> = state
        .alerting
        .store
        .alert_rules()
        .await?
        .into_iter()
        .filter(|rule| tenant.as_ref().is_none_or(|tenant| &rule.tenant == tenant))
        .collect();
    Ok(Json(json!({ "rules": rules })).into_response())
}

/// `POST /v1/alerts/rules`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RuleRequest {
    /// `CREATE ALERT name ON metric … WHEN …`.
    sql: String,
    /// Channels it sends to, by name (`GET /v1/alerts/channels`).
    #[serde(default)]
    channels: Vec<String>,
}

/// Creates or replaces a rule (by its name in the tenant); a rule of the config is refused.
#[utoipa::path(post, path = "/v1/alerts/rules", operation_id = "create_alert_rule", tag = "alerts", security(("bearer" = [])),
    request_body = RuleRequest,
    params(("tenant" = Option<String>, Query, description = "Admin keys: the tenant")),
    responses(
        (status = 201, description = "Created or replaced: the rule", body = serde_json::Value),
        (status = 200, description = "Unchanged: the rule", body = serde_json::Value),
        (status = 400, description = "Invalid rule (`invalid_sql` with `line` and `column`), unknown channel or body", body = crate::error::ErrorBody),
        (status = 409, description = "A rule of the config has this name", body = crate::error::ErrorBody),
    ))]
async fn create_rule(
    State(state): State<Arc<AlertsState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant = tenant_required(scope(&state, &headers, &params, true)?)?;
    let request: RuleRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            "invalid_body",
            format!("expected {{\"sql\": \"CREATE ALERT …\", \"channels\": [\"NAME\"]}}: {error}"),
        )
    })?;
    if request.sql.len() > 16 * 1024 {
        return Err(ApiError::bad_request(
            "too_large",
            "sql is longer than 16 KiB",
        ));
    }
    let alerting = &state.alerting;
    let record = alerting.checked(&tenant, &request.sql, &request.channels, ORIGIN_API)?;
    for channel in &record.channels {
        if alerting
            .channels
            .get(channel)
            .is_some_and(|config| !config.admits(&tenant))
        {
            return Err(ApiError::bad_request(
                "unknown_channel",
                format!("channel {channel:?} does not take tenant {tenant:?}'s notifications"),
            ));
        }
    }
    let rules = alerting.store.alert_rules().await?;
    if let Some(existing) = rules
        .iter()
        .find(|rule| rule.tenant == tenant && rule.name == record.name)
        && existing.origin == ORIGIN_CONFIG
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!(
                "rule {:?} is defined in the config ([[alerts]]): change it there, or use another name",
                record.name
            ),
        ));
    }
    let existing = rules
        .iter()
        .any(|rule| rule.tenant == tenant && rule.name == record.name);
    if !existing && rules.len() >= alerting.config.max_rules {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many",
            format!(
                "there are {} rules, the most alerting.max-rules allows: delete some first",
                rules.len()
            ),
        ));
    }
    let (stored, changed) = alerting.store.put_alert_rule(record).await?;
    alerting.changed.notify_one();
    let status = if changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored)).into_response())
}

/// Deletes a rule: it stops, its notifications stay in the history.
#[utoipa::path(delete, path = "/v1/alerts/rules/{name}", operation_id = "delete_alert_rule", tag = "alerts", security(("bearer" = [])),
    params(("name" = String, Path, description = "The rule"),
           ("tenant" = Option<String>, Query, description = "Admin keys: the tenant")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such rule", body = crate::error::ErrorBody),
        (status = 409, description = "A rule of the config", body = crate::error::ErrorBody),
    ))]
async fn delete_rule(
    State(state): State<Arc<AlertsState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let tenant = tenant_required(scope(&state, &headers, &params, true)?)?;
    let alerting = &state.alerting;
    let rules = alerting.store.alert_rules().await?;
    match rules
        .iter()
        .find(|rule| rule.tenant == tenant && rule.name == name)
    {
        None => Err(ApiError::not_found(format!(
            "tenant {tenant:?} has no alert rule {name:?}"
        ))),
        Some(rule) if rule.origin == ORIGIN_CONFIG => Err(ApiError::new(
            StatusCode::CONFLICT,
            "configured",
            format!("rule {name:?} is defined in the config ([[alerts]]): remove it there"),
        )),
        Some(_) => {
            alerting.store.delete_alert_rule(&tenant, &name).await?;
            alerting.changed.notify_one();
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

/// The tenant's silences.
#[utoipa::path(get, path = "/v1/alerts/silences", operation_id = "list_silences", tag = "alerts", security(("bearer" = [])),
    params(("tenant" = Option<String>, Query, description = "Admin keys: the tenant")),
    responses((status = 200, description = "`{\"silences\": [{id, tenant, rule, key, from, to, comment, created_at, active}…]}`", body = serde_json::Value)))]
async fn list_silences(
    State(state): State<Arc<AlertsState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let tenant = scope(&state, &headers, &params, false)?;
    let now = now_millis();
    let silences: Vec<serde_json::Value> = state
        .alerting
        .store
        .silences()
        .await?
        .into_iter()
        .filter(|silence| {
            tenant
                .as_ref()
                .is_none_or(|tenant| &silence.tenant == tenant)
        })
        .map(|silence| {
            let active = silence.from <= now && now < silence.to;
            let mut value = serde_json::to_value(&silence).unwrap_or_default();
            value["key"] = silence
                .key
                .as_deref()
                .and_then(|key| serde_json::from_str(key).ok())
                .unwrap_or(serde_json::Value::Null);
            value["active"] = active.into();
            value
        })
        .collect();
    Ok(Json(json!({ "silences": silences })).into_response())
}

/// `POST /v1/alerts/silences`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SilenceRequest {
    /// The rule silenced; none: all the tenant's rules.
    #[serde(default)]
    rule: Option<String>,
    /// Key fields a silenced notification's key has (`{"url": "/checkout"}`); none: every key.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    key: Option<serde_json::Map<String, serde_json::Value>>,
    /// From (RFC 3339 or epoch ms); default now.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    from: Option<serde_json::Value>,
    /// To (RFC 3339 or epoch ms), exclusive; or give `duration`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    to: Option<serde_json::Value>,
    /// How long from `from` (`2h`, `30m`), instead of `to`.
    #[serde(default)]
    duration: Option<String>,
    /// Why, for people.
    #[serde(default)]
    comment: String,
}

/// Silences a rule (or all the tenant's rules), for some keys or all, for a time range.
#[utoipa::path(post, path = "/v1/alerts/silences", operation_id = "create_silence", tag = "alerts", security(("bearer" = [])),
    request_body = SilenceRequest,
    params(("tenant" = Option<String>, Query, description = "Admin keys: the tenant")),
    responses(
        (status = 201, description = "The silence", body = serde_json::Value),
        (status = 400, description = "A bad field", body = crate::error::ErrorBody),
    ))]
async fn create_silence(
    State(state): State<Arc<AlertsState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant = tenant_required(scope(&state, &headers, &params, true)?)?;
    let request: SilenceRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            "invalid_body",
            format!("expected {{\"rule\"?, \"key\"?: {{…}}, \"from\"?, \"to\" or \"duration\", \"comment\"?}}: {error}"),
        )
    })?;
    let now = now_millis();
    let time = |name: &str, value: &serde_json::Value| match value {
        serde_json::Value::Number(number) => number.as_i64().ok_or_else(|| {
            ApiError::bad_request(
                "invalid_time",
                format!("{name}: use epoch milliseconds or RFC 3339"),
            )
        }),
        serde_json::Value::String(text) => time_param(name, text),
        _ => Err(ApiError::bad_request(
            "invalid_time",
            format!("{name}: use epoch milliseconds or RFC 3339"),
        )),
    };
    let from = request
        .from
        .as_ref()
        .map(|v| time("from", v))
        .transpose()?
        .unwrap_or(now);
    let to = match (&request.to, &request.duration) {
        (Some(to), None) => time("to", to)?,
        (None, Some(duration)) => {
            let duration: HumanDuration = duration.parse().map_err(|error| {
                ApiError::bad_request(
                    "invalid_duration",
                    format!("duration {duration:?}: {error} (e.g. \"2h\")"),
                )
            })?;
            from.saturating_add(Millis::try_from(duration.get().as_millis()).unwrap_or(Millis::MAX))
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "give the silence's end as \"to\" or its length as \"duration\" (one of them)",
            ));
        }
    };
    if to <= from || to - from > 366 * 86_400_000 {
        return Err(ApiError::bad_request(
            "invalid_range",
            "a silence ends after it starts and lasts at most 366 days",
        ));
    }
    if request
        .key
        .as_ref()
        .is_some_and(|fields| fields.len() > MAX_SILENCE_KEY_FIELDS)
    {
        return Err(ApiError::bad_request(
            "too_large",
            format!(
                "key names more than {MAX_SILENCE_KEY_FIELDS} fields: a metric's group keys are fewer"
            ),
        ));
    }
    if request.comment.len() > 1000 {
        return Err(ApiError::bad_request(
            "too_large",
            "comment is longer than 1000 bytes",
        ));
    }
    let alerting = &state.alerting;
    if let Some(rule) = &request.rule
        && !alerting
            .store
            .alert_rules()
            .await?
            .iter()
            .any(|stored| stored.tenant == tenant && &stored.name == rule)
    {
        return Err(ApiError::bad_request(
            "unknown_rule",
            format!("tenant {tenant:?} has no alert rule {rule:?} (GET /v1/alerts/rules)"),
        ));
    }
    let existing = alerting.store.silences().await?;
    if existing.iter().filter(|s| s.tenant == tenant).count() >= MAX_SILENCES {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many",
            format!("tenant {tenant:?} has {MAX_SILENCES} silences: delete expired ones first"),
        ));
    }
    let silence = SilenceRecord {
        id: format!("sil_{}", uuid_like()),
        tenant,
        rule: request.rule,
        key: request
            .key
            .map(|fields| serde_json::Value::Object(fields).to_string()),
        from,
        to,
        comment: request.comment,
        created_at: now,
    };
    alerting.store.put_silence(silence.clone()).await?;
    Ok((StatusCode::CREATED, Json(silence)).into_response())
}

/// A random id (128 bits, hex).
fn uuid_like() -> String {
    use rand::Rng;
    format!("{:032x}", rand::rng().random::<u128>())
}

/// Deletes a silence.
#[utoipa::path(delete, path = "/v1/alerts/silences/{id}", operation_id = "delete_silence", tag = "alerts", security(("bearer" = [])),
    params(("id" = String, Path, description = "The silence"),
           ("tenant" = Option<String>, Query, description = "Admin keys: the tenant")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such silence", body = crate::error::ErrorBody)))]
async fn delete_silence(
    State(state): State<Arc<AlertsState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let tenant = tenant_required(scope(&state, &headers, &params, true)?)?;
    if state.alerting.store.delete_silence(&tenant, &id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "tenant {tenant:?} has no silence {id:?}"
        )))
    }
}

/// The channels (without their secrets).
#[utoipa::path(get, path = "/v1/alerts/channels", operation_id = "list_alert_channels", tag = "alerts", security(("bearer" = [])),
    params(("tenant" = Option<String>, Query, description = "Admin keys: only the channels open to this tenant")),
    responses((status = 200, description = "`{\"channels\": [{name, kind, url, signed}…]}`", body = serde_json::Value)))]
async fn list_channels(
    State(state): State<Arc<AlertsState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let tenant = scope(&state, &headers, &params, false)?;
    let channels: Vec<serde_json::Value> = state
        .alerting
        .channels
        .values()
        .filter(|channel| tenant.as_ref().is_none_or(|tenant| channel.admits(tenant)))
        .map(|channel| {
            json!({
                "name": channel.name,
                "kind": channel.kind.as_str(),
                "url": channel.url,
                "signed": !channel.secret.is_empty(),
            })
        })
        .collect();
    Ok(Json(json!({ "channels": channels })).into_response())
}

/// Sends a test notification to a channel now and says what its receiver answered.
#[utoipa::path(post, path = "/v1/alerts/channels/{name}/test", operation_id = "test_alert_channel", tag = "alerts", security(("bearer" = [])),
    params(("name" = String, Path, description = "The channel"),
           ("tenant" = Option<String>, Query, description = "Admin keys: the tenant")),
    responses(
        (status = 200, description = "`{\"delivered\": true, \"id\"}`", body = serde_json::Value),
        (status = 404, description = "No such channel", body = crate::error::ErrorBody),
        (status = 502, description = "The receiver failed: its answer", body = crate::error::ErrorBody),
    ))]
async fn test_channel(
    State(state): State<Arc<AlertsState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let tenant = tenant_required(scope(&state, &headers, &params, true)?)?;
    let alerting = &state.alerting;
    let Some(channel) = alerting
        .channels
        .get(&name)
        .filter(|channel| channel.admits(&tenant))
    else {
        return Err(ApiError::not_found(format!(
            "no channel {name:?} for tenant {tenant:?} (GET /v1/alerts/channels)"
        )));
    };
    match super::notify::test_fire(alerting, channel, &tenant).await {
        Ok(id) => Ok(Json(json!({ "delivered": true, "id": id })).into_response()),
        Err(error) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "delivery_failed",
            error,
        )),
    }
}
