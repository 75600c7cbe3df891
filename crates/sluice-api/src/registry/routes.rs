//! Confluent Schema Registry's REST protocol, for the subset its clients use, under
//! `/schemas` (a tenant key's tenant) and `/schemas/tenants/{tenant}` (admin keys). Bodies and
//! answers are Confluent's, in `application/vnd.schemaregistry.v1+json`; errors are
//! `{"error_code": 40401, "message": "…"}` with Confluent's codes ([`SchemaError::code`]).
//!
//! | route | answer |
//! |---|---|
//! | `GET /subjects[?deleted=true]` | subject names |
//! | `POST /subjects/{subject}/versions` `{"schema", "schemaType"?}` | `{"id", "subject", "version", "schema", "schemaType"}`; 409, 422, 413 |
//! | `POST /subjects/{subject}[?deleted=true]` (lookup) | the version holding the schema; 40401, 40403 |
//! | `GET /subjects/{subject}/versions[?deleted=true]` | version numbers |
//! | `GET /subjects/{subject}/versions/{version\|latest}[/schema]` | the version (or its schema alone) |
//! | `DELETE /subjects/{subject}[/versions/{version}][?permanent=true]` | the versions deleted |
//! | `GET /schemas/ids/{id}[/schema\|/versions\|/subjects]`, `GET /schemas/types` | by id; types |
//! | `POST /compatibility/subjects/{subject}/versions[/{version}][?verbose=true]` | `{"is_compatible", "messages"?}` |
//! | `GET\|PUT /config[/{subject}]`, `DELETE /config/{subject}` | levels, and sluice's `validation`, `unknownEvents` |
//! | `GET /mode` | `{"mode": "READWRITE"}` |

use super::{Caller, SchemaService};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_schema::error::SchemaError;
use sluice_schema::registry::VersionRef;
use sluice_schema::subject::check_subject;
use sluice_schema::{
    Compatibility, SchemaType, SchemaVersion, SubjectConfig, UnknownEvents, ValidationMode,
};
use std::collections::HashMap;
use std::sync::Arc;

/// Confluent's content type.
const CONTENT: &str = "application/vnd.schemaregistry.v1+json";

type Params = Path<HashMap<String, String>>;
type Flags = Query<HashMap<String, String>>;
type Answer = Result<Response, Failure>;

/// A [`SchemaError`] as Confluent's error answer.
#[derive(Debug)]
pub struct Failure(SchemaError);

impl From<SchemaError> for Failure {
    fn from(error: SchemaError) -> Self {
        Failure(error)
    }
}

/// The registry's routes under `/schemas` and `/schemas/tenants/{tenant}`.
pub fn router(service: Arc<SchemaService>) -> Router {
    let routes = Router::new()
        .route("/", get(root))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_id))
        .route("/schemas/types", get(types))
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_all),
        )
        .route("/config", get(get_config).put(put_config))
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route("/mode", get(mode))
        .fallback(not_found);
    Router::new()
        .nest("/schemas/tenants/{tenant}", routes.clone())
        .nest("/schemas", routes)
        .with_state(service)
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let error = self.0;
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = reply(
            status,
            json!({"error_code": error.code(), "message": error.to_string()}),
        );
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        response
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static(CONTENT))],
        body.to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Answer {
    Ok(reply(StatusCode::OK, body))
}

/// The caller, from the `Authorization` header and the tenant in the path.
fn caller(
    service: &SchemaService,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Caller, SchemaError> {
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    service.caller(authorization, params.get("tenant").map(String::as_str))
}

fn subject(params: &Params) -> Result<&str, SchemaError> {
    let subject = params
        .get("subject")
        .map(String::as_str)
        .unwrap_or_default();
    check_subject(subject).map_err(SchemaError::InvalidRequest)?;
    Ok(subject)
}

fn version(params: &Params) -> Result<VersionRef, SchemaError> {
    VersionRef::parse(
        params
            .get("version")
            .map(String::as_str)
            .unwrap_or_default(),
    )
}

fn flag(query: &Flags, name: &str) -> bool {
    query
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn version_body(version: &SchemaVersion) -> Value {
    json!({
        "subject": version.subject,
        "version": version.version,
        "id": version.id,
        "schemaType": version.schema_type.as_str(),
        "schema": version.schema,
    })
}

/// A register, lookup or compatibility body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<Value>>,
}

fn schema_body(body: &Bytes) -> Result<(SchemaType, String), SchemaError> {
    let parsed: SchemaBody = serde_json::from_slice(body).map_err(|error| {
        SchemaError::InvalidRequest(format!(
            "the body must be {{\"schema\": \"<schema as a JSON string>\", \"schemaType\": \"JSON\" | \"AVRO\"}}: {error}"
        ))
    })?;
    if parsed.references.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(SchemaError::InvalidSchema(
            "schema references are not supported: put every definition in the schema itself (JSON Schema: $defs; Avro: the named type inline)".to_owned(),
        ));
    }
    let kind = match parsed.schema_type.as_deref() {
        None => SchemaType::Avro,
        Some(text) => text.parse().map_err(SchemaError::InvalidSchema)?,
    };
    Ok((kind, parsed.schema))
}

async fn root() -> Answer {
    ok(json!({}))
}

async fn not_found() -> Answer {
    Ok(reply(
        StatusCode::NOT_FOUND,
        json!({"error_code": 404, "message": "HTTP 404 Not Found: see the schema registry's routes in the README"}),
    ))
}

async fn types() -> Answer {
    ok(json!(["JSON", "AVRO"]))
}

async fn mode() -> Answer {
    ok(json!({"mode": "READWRITE"}))
}

async fn list_subjects(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    query: Flags,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    ok(json!(
        service
            .snapshot()
            .subjects(&caller.tenant, flag(&query, "deleted"))
    ))
}

async fn register(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let subject = subject(&params)?;
    let (kind, text) = schema_body(&body)?;
    let version = service.register(&caller, subject, kind, &text).await?;
    ok(version_body(&version))
}

async fn lookup(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    query: Flags,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let subject = subject(&params)?;
    let (kind, text) = schema_body(&body)?;
    let checked = service.parse(kind, &text)?;
    let registry = service.snapshot();
    let found = registry.lookup(
        &caller.tenant,
        subject,
        kind,
        &checked,
        flag(&query, "deleted"),
    )?;
    ok(version_body(found))
}

async fn list_versions(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    query: Flags,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let subject = subject(&params)?;
    ok(json!(service.snapshot().versions(
        &caller.tenant,
        subject,
        flag(&query, "deleted")
    )?))
}

async fn get_version(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    query: Flags,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let (subject, version) = (subject(&params)?, version(&params)?);
    let registry = service.snapshot();
    ok(version_body(registry.version(
        &caller.tenant,
        subject,
        version,
        flag(&query, "deleted"),
    )?))
}

async fn get_version_schema(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    query: Flags,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let (subject, version) = (subject(&params)?, version(&params)?);
    let registry = service.snapshot();
    let found = registry.version(&caller.tenant, subject, version, flag(&query, "deleted"))?;
    Ok(raw(&found.schema))
}

fn raw(schema: &str) -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, HeaderValue::from_static(CONTENT))],
        schema.to_owned(),
    )
        .into_response()
}

async fn referenced_by(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let (subject, version) = (subject(&params)?, version(&params)?);
    service
        .snapshot()
        .version(&caller.tenant, subject, version, false)?;
    // Schemas cannot refer to others here, so nothing refers to this one.
    ok(json!([]))
}

async fn delete_subject(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    query: Flags,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let subject = subject(&params)?;
    ok(json!(
        service
            .delete(&caller, subject, None, flag(&query, "permanent"))
            .await?
    ))
}

async fn delete_version(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    query: Flags,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let subject = subject(&params)?;
    let number = match version(&params)? {
        VersionRef::Number(number) => number,
        VersionRef::Latest => {
            service
                .snapshot()
                .version(
                    &caller.tenant,
                    subject,
                    VersionRef::Latest,
                    flag(&query, "permanent"),
                )?
                .version
        }
    };
    let deleted = service
        .delete(&caller, subject, Some(number), flag(&query, "permanent"))
        .await?;
    ok(json!(deleted.first().copied().unwrap_or(number)))
}

fn id(params: &Params) -> Result<u32, SchemaError> {
    let text = params.get("id").map(String::as_str).unwrap_or_default();
    text.parse().map_err(|_| {
        SchemaError::SchemaNotFound(format!(
            "Schema {text} not found: ids are positive integers"
        ))
    })
}

async fn schema_by_id(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let registry = service.snapshot();
    let found = registry.by_id(Some(&caller.tenant), id(&params)?)?;
    ok(json!({"schema": found.schema, "schemaType": found.schema_type.as_str()}))
}

async fn raw_schema_by_id(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let registry = service.snapshot();
    Ok(raw(&registry
        .by_id(Some(&caller.tenant), id(&params)?)?
        .schema))
}

async fn versions_of_id(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    query: Flags,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let id = id(&params)?;
    let registry = service.snapshot();
    registry.by_id(Some(&caller.tenant), id)?;
    let uses: Vec<Value> = registry
        .uses_of(&caller.tenant, id, flag(&query, "deleted"))
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    ok(json!(uses))
}

async fn subjects_of_id(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    query: Flags,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let id = id(&params)?;
    let registry = service.snapshot();
    registry.by_id(Some(&caller.tenant), id)?;
    let mut subjects: Vec<&str> = registry
        .uses_of(&caller.tenant, id, flag(&query, "deleted"))
        .into_iter()
        .map(|(subject, _)| subject)
        .collect();
    subjects.dedup();
    ok(json!(subjects))
}

async fn check_version(
    state: State<Arc<SchemaService>>,
    params: Params,
    query: Flags,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let against = version(&params)?;
    compatibility(state, params, query, headers, body, Some(against)).await
}

async fn check_all(
    state: State<Arc<SchemaService>>,
    params: Params,
    query: Flags,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    compatibility(state, params, query, headers, body, None).await
}

async fn compatibility(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    query: Flags,
    headers: HeaderMap,
    body: Bytes,
    against: Option<VersionRef>,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let subject = subject(&params)?;
    let (kind, text) = schema_body(&body)?;
    let checked = service.parse(kind, &text)?;
    let registry = service.snapshot();
    let mut level = registry.compatibility(&caller.tenant, subject);
    let number = match against {
        Some(VersionRef::Number(number)) => {
            registry.version(&caller.tenant, subject, VersionRef::Number(number), false)?;
            Some(number)
        }
        Some(VersionRef::Latest) => {
            registry.version(&caller.tenant, subject, VersionRef::Latest, false)?;
            None
        }
        None => {
            // Against every version, whatever the level's reach.
            level = transitive(level);
            None
        }
    };
    let problems = registry.check(&caller.tenant, subject, level, &checked.parsed, number)?;
    let mut answer = json!({"is_compatible": problems.is_empty()});
    if flag(&query, "verbose") {
        answer["messages"] = json!(problems.iter().map(ToString::to_string).collect::<Vec<_>>());
    }
    ok(answer)
}

fn transitive(level: Compatibility) -> Compatibility {
    match level {
        Compatibility::Backward => Compatibility::BackwardTransitive,
        Compatibility::Forward => Compatibility::ForwardTransitive,
        Compatibility::Full => Compatibility::FullTransitive,
        other => other,
    }
}

/// A `PUT /config` body: Confluent's `compatibility`, and sluice's validation settings.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigBody {
    #[serde(default)]
    compatibility: Option<String>,
    #[serde(default)]
    compatibility_level: Option<String>,
    #[serde(default)]
    validation: Option<String>,
    #[serde(default)]
    unknown_events: Option<String>,
    // Confluent's other settings, accepted and not used.
    #[serde(default)]
    normalize: Option<bool>,
    #[serde(default)]
    alias: Option<String>,
}

fn config_body(
    body: &Bytes,
    current: SubjectConfig,
    tenant_level: bool,
) -> Result<(SubjectConfig, Value), SchemaError> {
    let parsed: ConfigBody = serde_json::from_slice(body).map_err(|error| {
        SchemaError::InvalidConfig(format!(
            "the body must be {{\"compatibility\": \"BACKWARD\", \"validation\": \"off|warn|enforce\", \"unknownEvents\": \"allow|reject\"}} (each optional): {error}"
        ))
    })?;
    let _ = (parsed.normalize, parsed.alias);
    let mut next = current;
    let mut echo = serde_json::Map::new();
    if let Some(text) = parsed.compatibility.or(parsed.compatibility_level) {
        let level: Compatibility = text.parse().map_err(|e: String| {
            SchemaError::InvalidConfig(format!("Invalid compatibility level: {e}"))
        })?;
        next.compatibility = Some(level);
        echo.insert("compatibility".into(), json!(level.as_str()));
    }
    if let Some(text) = parsed.validation {
        let mode: ValidationMode = text.parse().map_err(SchemaError::InvalidConfig)?;
        next.validation = Some(mode);
        echo.insert("validation".into(), json!(mode.as_str()));
    }
    if let Some(text) = parsed.unknown_events {
        if !tenant_level {
            return Err(SchemaError::InvalidConfig(
                "unknownEvents is a tenant setting: PUT it to /config, not /config/{subject}"
                    .to_owned(),
            ));
        }
        let unknown: UnknownEvents = text.parse().map_err(SchemaError::InvalidConfig)?;
        next.unknown_events = Some(unknown);
        echo.insert("unknownEvents".into(), json!(unknown.as_str()));
    }
    Ok((next, Value::Object(echo)))
}

fn config_answer(
    level: Compatibility,
    settings: Option<&SubjectConfig>,
    service: &SchemaService,
) -> Value {
    let validation = settings
        .and_then(|s| s.validation)
        .unwrap_or(service.config().validation);
    let mut answer =
        json!({"compatibilityLevel": level.as_str(), "validation": validation.as_str()});
    if let Some(settings) = settings.filter(|s| s.subject.is_empty()) {
        answer["unknownEvents"] = json!(
            settings
                .unknown_events
                .unwrap_or(service.config().unknown_events)
                .as_str()
        );
    }
    answer
}

async fn get_config(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let settings = service.snapshot().tenant_settings(&caller.tenant);
    ok(config_answer(
        service.compatibility(&caller.tenant, None),
        Some(&settings),
        &service,
    ))
}

async fn put_config(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let current = service.snapshot().tenant_settings(&caller.tenant);
    let (next, echo) = config_body(&body, current, true)?;
    service.configure(&caller, None, Some(next)).await?;
    ok(echo)
}

async fn get_subject_config(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    query: Flags,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let subject = subject(&params)?;
    let registry = service.snapshot();
    let own = registry.subject_settings(&caller.tenant, subject);
    match own.and_then(|s| s.compatibility) {
        Some(level) => ok(config_answer(level, own, &service)),
        None if flag(&query, "defaultToGlobal") => ok(config_answer(
            registry.compatibility(&caller.tenant, subject),
            own,
            &service,
        )),
        None => Err(SchemaError::SubjectLevelNotConfigured(subject.to_owned()).into()),
    }
}

async fn put_subject_config(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let subject = subject(&params)?;
    let current = service
        .snapshot()
        .subject_settings(&caller.tenant, subject)
        .cloned()
        .unwrap_or_default();
    let (next, echo) = config_body(&body, current, false)?;
    service
        .configure(&caller, Some(subject), Some(next))
        .await?;
    ok(echo)
}

async fn delete_subject_config(
    State(service): State<Arc<SchemaService>>,
    params: Params,
    headers: HeaderMap,
) -> Answer {
    let caller = caller(&service, &headers, &params)?;
    let subject = subject(&params)?;
    let registry = service.snapshot();
    let own = registry.subject_settings(&caller.tenant, subject).cloned();
    let Some(level) = own.as_ref().and_then(|s| s.compatibility) else {
        return Err(SchemaError::SubjectLevelNotConfigured(subject.to_owned()).into());
    };
    service.configure(&caller, Some(subject), None).await?;
    ok(json!({"compatibilityLevel": level.as_str()}))
}
