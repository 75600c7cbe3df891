//! The HTTP collector: how every event enters sluice. It speaks the Segment HTTP Tracking API,
//! so Segment's and RudderStack's SDKs work unchanged; tells a client precisely what is wrong
//! with bad input (per event, with field paths); appends accepted events durably to the
//! `events` topic and rejected ones, with their reason and raw input, to the dead-letter topic;
//! drops retried copies of events already appended; and refuses load it cannot take (429/503
//! with `Retry-After`) instead of queueing without bound.
//!
//! # Layout
//! - [`http`]: routes, body reading, status codes and response shapes, CORS.
//! - [`collector`]: the request pipeline (parse → authenticate → normalize → dedup → append).
//! - [`doc`]: request and answer shapes for the OpenAPI description.
//! - [`enrich`]: what the collector adds to an event's context (place, device, campaign,
//!   referrer) and what it keeps of its IP address.
//! - [`dedup`]: the bounded set of recently appended `messageId`s, its snapshot, and how it
//!   is restored at start (snapshot + log, damage-tolerant) with its coverage reported.
//! - [`auth`]: write keys from HTTP Basic or the body.
//! - [`body`]: bounded reading and gzip decompression.
//! - [`config`]: the `[ingest]` section.
//! - [`telemetry`]: Prometheus counters and gauges.

pub mod auth;
pub mod body;
pub mod collector;
pub mod config;
pub mod dedup;
pub mod doc;
pub mod enrich;
pub mod http;
pub mod sources;
pub mod telemetry;

pub use collector::{Accepted, Collector, IngestError, Rejection};
pub use config::IngestConfig;
pub use http::{cors_layer, router};
