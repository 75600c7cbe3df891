//! The HTTP server: the routers of every stage merged under one listener, plus health,
//! readiness and metrics, with request metrics and bounds on every request; the accept loop
//! and connection clocks are in [`connections`].
//!
//! `/metrics` is served on the main listener or, with `telemetry.metrics-listen`, only on a
//! listener of its own ([`metrics_app`]); either way it asks for an admin key unless
//! `telemetry.metrics-auth = "none"`, because a scrape names every tenant and key.

pub mod connections;

pub use connections::{ConnectionLimits, serve};

use crate::config::{ServerConfig, TelemetryConfig};
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use sluice_api::error::ApiError;
use sluice_api::keys::Access;
use sluice_core::access::Role;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tower_http::timeout::TimeoutLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Whether the process should receive traffic (`/readyz`): not while starting (recovering the
/// log, loading state) nor while shutting down.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

const READY: u8 = 1;
const STOPPING: u8 = 2;

impl Readiness {
    /// Marks the process ready for traffic.
    pub fn set_ready(&self) {
        self.0.store(READY, Ordering::Release);
    }

    /// Marks the process as shutting down: load balancers should stop sending traffic.
    pub fn set_stopping(&self) {
        self.0.store(STOPPING, Ordering::Release);
    }

    fn state(&self) -> &'static str {
        match self.0.load(Ordering::Acquire) {
            READY => "ready",
            STOPPING => "stopping",
            _ => "starting",
        }
    }
}

#[derive(Clone)]
struct Ops {
    readiness: Arc<Readiness>,
    /// The OpenAPI document, rendered once the routes are known.
    openapi: Arc<OnceLock<bytes::Bytes>>,
}

/// `GET /metrics`: the Prometheus rendering, and who may read it.
#[derive(Debug, Clone)]
pub struct PrometheusEndpoint {
    prometheus: PrometheusHandle,
    /// Checks for an admin key; `None` when `telemetry.metrics-auth = "none"`.
    access: Option<Arc<Access>>,
}

impl PrometheusEndpoint {
    /// The endpoint `telemetry` asks for, checking keys against `access`.
    pub fn new(
        prometheus: PrometheusHandle,
        telemetry: &TelemetryConfig,
        access: &Arc<Access>,
    ) -> PrometheusEndpoint {
        PrometheusEndpoint {
            prometheus,
            access: telemetry
                .metrics_auth
                .needs_key()
                .then(|| Arc::clone(access)),
        }
    }
}

/// How [`ConnectionLimits`] follow `[server]`, for the listener named `listener`.
pub fn connection_limits(config: &ServerConfig, listener: &'static str) -> ConnectionLimits {
    ConnectionLimits {
        listener,
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout.get(),
        keep_alive_timeout: config.keep_alive_timeout.get(),
    }
}

/// Builds the whole application: `stages` (collector, query API, …) plus the operational
/// endpoints — `/metrics` when `metrics` is given (not when it has a listener of its own) —
/// and `/openapi.json`, the OpenAPI document of every route, generated from the handlers'
/// descriptions; all behind the request-metrics middleware and the server's bounds.
pub fn app(
    stages: OpenApiRouter,
    config: &ServerConfig,
    readiness: Arc<Readiness>,
    metrics: Option<PrometheusEndpoint>,
) -> Router {
    let openapi = Arc::new(OnceLock::new());
    let mut ops = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi_json))
        .with_state(Ops {
            readiness,
            openapi: Arc::clone(&openapi),
        });
    let metrics_open = metrics.as_ref().is_some_and(|m| m.access.is_none());
    if let Some(metrics) = metrics {
        ops = ops.merge(metrics_routes(metrics));
    }
    let (router, mut document) = stages.merge(ops).split_for_parts();
    if metrics_open {
        // `telemetry.metrics-auth = "none"`: the document says what the route does.
        if let Some(operation) = document
            .paths
            .paths
            .get_mut("/metrics")
            .and_then(|item| item.get.as_mut())
        {
            operation.security = Some(Vec::new());
            operation
                .responses
                .responses
                .retain(|code, _| code == "200");
        }
    }
    // The routes (and so the document) are known only once the router is split; the handler
    // reads the rendering through the cell it was given before.
    match describe(document).to_pretty_json() {
        Ok(json) => {
            let _ = openapi.set(bytes::Bytes::from(json));
        }
        Err(error) => tracing::error!(%error, "cannot render the OpenAPI document"),
    }
    bounded(router, config)
}

/// The application of `telemetry.metrics-listen`: `/metrics` alone, with the same bounds.
pub fn metrics_app(metrics: PrometheusEndpoint, config: &ServerConfig) -> Router {
    let (router, _) = metrics_routes(metrics).split_for_parts();
    bounded(router, config)
}

fn metrics_routes(metrics: PrometheusEndpoint) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(render_metrics))
        .with_state(metrics)
}

/// `router` behind the request-metrics middleware, the body limit and the request timeout.
fn bounded(router: Router, config: &ServerConfig) -> Router {
    let max_body = config.max_request_bytes.as_usize();
    router
        .layer(middleware::from_fn(move |request, next| {
            limit_body(max_body, request, next)
        }))
        .layer(middleware::from_fn(track_requests))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout.get(),
        ))
}

/// The document's title, version and security schemes.
fn describe(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
    document.info = utoipa::openapi::InfoBuilder::new()
        .title("sluice")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Real-time event analytics: a Segment-compatible collector, windowed metrics, and \
             their query API (REST, WebSocket, GraphQL). Collector routes take a write key as the \
             HTTP Basic username; every other route a bearer key: read keys read their tenant's \
             metrics, admin keys administer.",
        ))
        .build();
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    components.add_security_scheme(
        "basic",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
    );
    document
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", body = serde_json::Value)))]
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: 200 when ready for traffic, 503 while starting or stopping.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "`{\"status\":\"ready\"}`", body = serde_json::Value),
        (status = 503, description = "`{\"status\":\"starting\"}` or `stopping`", body = serde_json::Value),
    ))]
async fn readyz(State(ops): State<Ops>) -> Response {
    let state = ops.readiness.state();
    let status = if state == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(serde_json::json!({ "status": state }))).into_response()
}

/// Prometheus metrics of every stage, in the text exposition format. Needs an admin key unless
/// `telemetry.metrics-auth = "none"`: labels name tenants and key ids (see
/// `telemetry.tenant-labels`).
#[utoipa::path(get, path = "/metrics", operation_id = "prometheus_metrics", tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
        (status = 401, description = "No or unknown key", body = sluice_api::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = sluice_api::error::ErrorBody),
    ))]
async fn render_metrics(State(metrics): State<PrometheusEndpoint>, headers: HeaderMap) -> Response {
    if let Some(access) = &metrics.access {
        if !headers.contains_key(axum::http::header::AUTHORIZATION) {
            return ApiError::unauthorized(
                "GET /metrics needs an admin key: send Authorization: Bearer ADMIN_KEY (keys from \
                 admin-keys), or serve it on a private address (telemetry.metrics-listen) with \
                 telemetry.metrics-auth = \"none\"",
            )
            .into_response();
        }
        if let Err(error) = access.authorize(&headers, Role::Admin) {
            return error.into_response();
        }
    }
    let body = metrics.prometheus.render();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}

/// This document: the OpenAPI 3.1 description of every route.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI document", body = serde_json::Value),
        (status = 500, description = "The document could not be rendered (a bug; see the log)"),
    ))]
async fn openapi_json(State(ops): State<Ops>) -> Response {
    match ops.openapi.get() {
        Some(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.clone(),
        )
            .into_response(),
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({"error": {"code": "internal",
                "message": "the OpenAPI document could not be rendered (see the server log)"}})),
        )
            .into_response(),
    }
}

/// Refuses bodies over `server.max-request-bytes` with a 413 that names the setting: at once
/// when `Content-Length` says so, otherwise when the streamed body crosses the limit.
async fn limit_body(max: usize, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        let message = format!(
            "request body is larger than the limit of {max} bytes (server.max-request-bytes); send smaller requests"
        );
        let body = serde_json::json!({ "success": false, "error": { "code": "too_large", "message": message } });
        return (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response();
    }
    let (parts, body) = request.into_parts();
    let limited = axum::body::Body::new(http_body_util::Limited::new(body, max));
    next.run(Request::from_parts(parts, limited)).await
}

/// Counts every request and records its latency, labelled by route template (never by raw
/// path, which would make label cardinality unbounded).
async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let in_flight = metrics::gauge!("sluice_http_requests_in_flight");
    in_flight.increment(1.0);
    let start = Instant::now();
    let response = next.run(request).await;
    in_flight.decrement(1.0);
    let status = response.status().as_u16().to_string();
    metrics::histogram!("sluice_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("sluice_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// SIGINT (Ctrl-C) and SIGTERM handlers, installed when this is created — before the server
/// announces itself, so a signal sent right after start-up is never missed.
#[derive(Debug)]
pub struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers (needs a running tokio runtime).
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the first SIGINT or SIGTERM.
    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
