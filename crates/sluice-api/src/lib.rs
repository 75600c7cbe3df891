//! The serving layer: what users and operators call to manage and read metrics. [`router`]
//! builds all of it.
//!
//! # Layout
//! - [`alerts`]: `/v1/alerts…` — alert rules, their evaluation, the notifier, silences.
//! - [`admin`]: the admin API — `/v1/admin/metrics` (define, list, describe, delete and replay
//!   metrics) and `/v1/admin/tenants`, `/v1/admin/keys` (tenants, keys and their limits).
//! - [`boards`]: `/v1/boards` — the dashboard's saved boards (read key).
//! - [`graphql`]: `/v1/graphql` — queries and subscriptions (graphql-transport-ws).
//! - [`push`]: `/v1/live` — live push over WebSocket; [`feed`]: what a subscription is sent,
//!   computed once per metric and tenant for every subscriber.
//! - [`socket`]: a WebSocket connection's rules (send queue, slow clients, pings, revoked
//!   keys, shutdown), for live push and GraphQL alike.
//! - [`rest`]: `/v1/metrics` — the query REST API.
//! - [`registry`]: `/schemas` — the schema registry, Confluent's REST protocol, and the
//!   schema files of `schemas.dir`.
//! - [`query`]: the serving engine: caches of final windows, live snapshots, answers.
//! - [`keys`]: the key directory (config + store), authorization and rate limits, and the
//!   keys of long-lived sessions, checked again when keys change.
//! - [`auth`]: bearer keys.
//! - [`config`]: the `[api]` and `[quotas]` sections.
//! - [`dashboard`]: `/` and `/assets/…` — the dashboard's files (`web/`), embedded.
//! - [`error`]: JSON error answers.

pub mod admin;
pub mod alerts;
pub mod auth;
pub mod boards;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod feed;
pub mod graphql;
pub mod keys;
pub mod push;
pub mod query;
pub mod registry;
pub mod rest;
pub mod socket;

pub use error::ApiError;

use config::ApiConfig;
use keys::Access;
use sluice_log::LogBackend;
use sluice_pipelines::Pipelines;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

/// The whole serving surface — metric admin, tenants and keys, queries, live push and
/// GraphQL — with its OpenAPI description, reading `pipelines` and the store they write and
/// authorizing with `access`. WebSocket connections (live push and GraphQL together) share
/// `api.ws-max-connections`; `shutdown` closes them with 1001.
///
/// Returns the alerting service too, which the caller starts (`Alerting::start`) once it has
/// applied the config's rules.
pub fn router(
    pipelines: Pipelines<LogBackend>,
    access: Arc<Access>,
    config: &ApiConfig,
    alerting: (&alerts::AlertingConfig, &[alerts::ChannelConfig]),
    shutdown: CancellationToken,
) -> Result<(OpenApiRouter, Arc<alerts::Alerting>), String> {
    let serving = query::Serving::new(
        Arc::new(pipelines.clone()),
        pipelines.store().clone(),
        config.clone(),
    );
    let pipelines_store = pipelines.store().clone();
    let sockets = Arc::new(Semaphore::new(config.ws_max_connections));
    let hubs = Arc::new(feed::Hubs::default());
    let admin = admin::metrics::AdminState {
        pipelines,
        access: Arc::clone(&access),
    };
    let tenants = admin::tenants::TenantsState {
        access: Arc::clone(&access),
        max_tenants: config.max_tenants,
        max_keys: config.max_keys,
    };
    let rest = rest::RestState {
        access: Arc::clone(&access),
        serving: Arc::clone(&serving),
    };
    let push = push::PushState {
        access: Arc::clone(&access),
        serving: Arc::clone(&serving),
        hubs: Arc::clone(&hubs),
        connections: Arc::clone(&sockets),
        shutdown: shutdown.clone(),
    };
    let boards = boards::BoardsState {
        access: Arc::clone(&access),
        serving: Arc::clone(&serving),
    };
    let alerting = alerts::Alerting::new(
        pipelines_store.clone(),
        Arc::clone(&serving),
        alerting.0.clone(),
        alerting.1,
    )?;
    let alert_routes = alerts::routes::AlertsState {
        access: Arc::clone(&access),
        alerting: Arc::clone(&alerting),
    };
    let graphql = graphql::GraphqlState::new(access, serving, hubs, sockets, shutdown);
    let router = admin::metrics::router(Arc::new(admin))
        .merge(admin::tenants::router(Arc::new(tenants)))
        .merge(rest::router(Arc::new(rest)))
        .merge(push::router(Arc::new(push)))
        .merge(graphql::router(Arc::new(graphql)))
        .merge(boards::router(Arc::new(boards)))
        .merge(alerts::routes::router(Arc::new(alert_routes)));
    Ok((router, alerting))
}
