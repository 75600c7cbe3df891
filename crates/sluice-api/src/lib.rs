//! The serving layer: what users and operators call to manage and read metrics.
//!
//! # Layout
//! - [`admin`]: `/v1/admin/metrics` — define, list, describe, delete and replay metrics.
//! - [`tenants`]: `/v1/admin/tenants`, `/v1/admin/keys` — tenants, keys and their limits.
//! - [`graphql`]: `/v1/graphql` — queries and subscriptions (graphql-transport-ws).
//! - [`push`]: `/v1/live` — live push over WebSocket; [`feed`]: what a subscription is sent,
//!   computed once per metric and tenant for every subscriber.
//! - [`socket`]: a WebSocket connection's rules (send queue, slow clients, pings, revoked
//!   keys, shutdown), for live push and GraphQL alike.
//! - [`rest`]: `/v1/metrics` — the query REST API.
//! - [`query`]: the serving engine: caches of final windows, live snapshots, answers.
//! - [`access`]: the key directory (config + store), authorization and rate limits, and the
//!   keys of long-lived sessions, checked again when keys change.
//! - [`auth`]: bearer keys.
//! - [`config`]: the `[api]` and `[quotas]` sections.
//! - [`error`]: JSON error answers.

pub mod access;
pub mod admin;
pub mod auth;
pub mod config;
pub mod error;
pub mod feed;
pub mod graphql;
pub mod push;
pub mod query;
pub mod rest;
pub mod socket;
pub mod tenants;

pub use error::ApiError;
