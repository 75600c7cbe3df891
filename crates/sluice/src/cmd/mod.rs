//! The subcommands: one file each, one line each in [`Command`].

pub mod alerts;
pub mod archive;
pub mod bench;
pub mod check_config;
pub mod log;
pub mod query;
pub mod replay;
pub mod schemas;
pub mod send;
pub mod serve;
pub mod tail;
pub mod topics;
pub mod users;
pub mod version;

use clap::{Parser, Subcommand};

/// sluice: real-time event analytics in one binary.
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything in one process: collector, log, stream engine, store, query API.
    Serve(serve::ServeArgs),
    /// Check a config file and report every problem with its path.
    CheckConfig(check_config::CheckConfigArgs),
    /// Send Segment messages from an NDJSON file or JSON array to a running sluice.
    Send(send::SendArgs),
    /// Recompute a metric from the log and replace its results atomically.
    Replay(replay::ReplayArgs),
    /// List, create and describe the log's topics.
    Topics(topics::TopicsArgs),
    /// Read a metric from a running sluice (table or JSON); without a metric, list them.
    Query(query::QueryArgs),
    /// List alert states and notifications of a running sluice, or test a channel.
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
    /// Erase a user (their future events are dropped) or list the erased, through a running
    /// sluice.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Remove a user's events from the raw event archive (Parquet files in a directory or S3).
    #[command(subcommand)]
    Archive(archive::ArchiveCommand),
    /// Check schema files, or register a directory of them with a running sluice.
    Schemas(schemas::SchemasArgs),
    /// Print a topic's records as JSON lines, following new ones.
    Tail(tail::TailArgs),
    /// Check the log on disk (`verify`), or salvage what damage left of it (`repair`).
    Log(log::LogArgs),
    /// Benchmarks: throughput and latency of each stage, measured for real.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print the version.
    Version,
}

impl Cli {
    /// Runs the chosen command.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => serve::run(args),
            Command::CheckConfig(args) => check_config::run(args),
            Command::Send(args) => send::run(args),
            Command::Replay(args) => replay::run(args),
            Command::Topics(args) => topics::run(args),
            Command::Query(args) => query::run(args),
            Command::Schemas(args) => schemas::run(args),
            Command::Alerts(command) => command.run(),
            Command::Users(command) => command.run(),
            Command::Archive(command) => command.run(),
            Command::Tail(args) => tail::run(args),
            Command::Log(args) => log::run(args),
            Command::Bench(command) => command.run(),
            Command::Version => version::run(),
        }
    }
}
