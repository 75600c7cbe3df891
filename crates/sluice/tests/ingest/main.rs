//! Black-box tests of the collector, in one test binary: HTTP behaviour, a real Segment SDK,
//! and SIGKILL under load.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod compat;
mod crash;
