//! Black-box tests of the collector, in one test binary: HTTP behaviour, real Segment SDKs
//! (Python, and the browser SDK in Chromium), SIGKILL under load, and slow and idle clients at
//! the connection limit.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod browser;
mod compat;
mod connections;
mod crash;
mod enrich;
mod schemas;
