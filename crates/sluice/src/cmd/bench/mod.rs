//! `sluice bench …`: whole-system benchmarks that print throughput and latency percentiles, and
//! end with one JSON line of the headline figures. One file per benchmark, one line each in
//! [`BenchCommand`].

pub mod log;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The durable log: concurrent appends, replay, and the disk's own bandwidth beside them.
    Log(log::LogBenchArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Log(args) => log::run(args),
    }
}
