//! The `sluice` binary's library: command-line interface, configuration and wiring. Each stage lives in
//! its own crate (ingest → log → stream → store → api); this crate only puts them together.
//!
//! # Layout
//! - `cmd/`: one file per subcommand, listed in `cmd::Command`.
//! - `config.rs` + `default.toml`: the configuration tree and every default.
//! - `server/`: the HTTP server: `mod.rs` the routers of every stage, health and metrics;
//!   `connections.rs` the accept loop, connection limits, clocks and shutdown.
//! - `telemetry.rs`: logs and the Prometheus recorder.
//! - `first_start.rs` (the default tenant and its keys, the key-id secret), `data_dir.rs`:
//!   start-up chores.
//! - `log_tools.rs`: how command-line tools open the log beside a running server.

pub mod app;
pub mod client;
pub mod cmd;
pub mod config;
pub mod data_dir;
pub mod first_start;
pub mod log_tools;
pub mod server;
#[cfg(feature = "kafka")]
pub mod sources;
pub mod telemetry;

/// An error the user can fix (bad flag, bad config, address in use): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// The exit code for an error: 2 when the user can fix it, 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error
        .chain()
        .any(|cause| cause.downcast_ref::<UserError>().is_some())
    {
        2
    } else {
        1
    }
}
