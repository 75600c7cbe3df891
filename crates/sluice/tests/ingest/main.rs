//! Black-box tests of the collector, in one test binary: HTTP behaviour, a real Segment SDK,
//! SIGKILL under load, and slow and idle clients at the connection limit.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod compat;
mod connections;
mod crash;
