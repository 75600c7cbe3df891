//! Black-box tests of the serving layer, in one test binary: the real app on 127.0.0.1:0,
//! spoken to over HTTP (and WebSocket and GraphQL), with events sent through the collector.

#[path = "../support/mod.rs"]
mod support;

mod alerts;
mod archive;
mod boards;
mod dashboard;
mod dead_letters;
mod erasure;
mod graphql;
mod harness;
mod identity;
mod keys;
mod openapi;
mod push;
mod query;
mod revoke;
mod sessions;
mod slow;
mod streams;
