//! The stream engine's integration tests, in one binary:
//! - `properties`: random event streams (bounded disorder, late events) through the engine
//!   and through a brute-force oracle, compared for every window kind and aggregate; and the
//!   partial-merge property (partitions merged = the whole stream).
//! - `identity`: `CREATE IDENTITY` against a reference, across checkpoints and crashes.
//! - `sessions`: `CREATE SESSIONS` against a reference, across checkpoints and crashes.
//! - `golden`: text files in `tests/golden/`: events and a metric in, expected windows out.

mod generator;
mod golden;
mod identity;
mod properties;
mod sessions;
mod task;
