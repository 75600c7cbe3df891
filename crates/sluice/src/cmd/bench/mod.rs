//! `sluice bench …`: whole-system benchmarks. Each prints progress and a human summary, and
//! its last stdout line is one JSON object with the figures, for scripts and docs/BENCHMARKS.md.

pub mod archive;
pub mod backfill;
pub mod e2e;
pub mod ingest;
pub mod log;
pub mod push;
pub mod query;
pub mod restart;
mod server;
pub mod stream;

use anyhow::Context;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// HTTP load generator against a running sluice: events/s and request latency.
    Ingest(ingest::IngestBenchArgs),
    /// The durable log: concurrent appends, replay, and the disk's own bandwidth beside them.
    Log(log::LogBenchArgs),
    /// Restart after a crash: time until processing again with many open windows.
    Restart(restart::RestartBenchArgs),
    /// Freshness: time from an event's 200 to its visibility in a query and on a WebSocket.
    E2e(e2e::E2eBenchArgs),
    /// Dashboard reads: concurrent clients reading 24 h of 1-minute windows, queries/s and latency.
    Query(query::QueryBenchArgs),
    /// Live subscriptions: CPU and memory of many WebSocket subscriptions on a metric with many
    /// open windows, read or not.
    Push(push::PushBenchArgs),
    /// The stream engine: a metric over synthetic events read from the file log, events/s.
    Stream(stream::StreamBenchArgs),
    /// The whole server's backfill of a metric over many tenants: events/s, stored rows and
    /// bytes per result row, peak memory, rows read back per second.
    Backfill(backfill::BackfillBenchArgs),
    /// The raw event archive alone: events/s into Parquet, bytes per event on disk.
    Archive(archive::ArchiveBenchArgs),
}

impl BenchCommand {
    /// Runs the benchmark.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            BenchCommand::Ingest(args) => ingest::run(args),
            BenchCommand::Log(args) => log::run(args),
            BenchCommand::Restart(args) => restart::run(args),
            BenchCommand::Stream(args) => stream::run(args),
            BenchCommand::Query(args) => query::run(args),
            BenchCommand::E2e(args) => e2e::run(args),
            BenchCommand::Push(args) => push::run(args),
            BenchCommand::Backfill(args) => backfill::run(args),
            BenchCommand::Archive(args) => archive::run(args),
        }
    }
}

/// Percentile of a latency histogram recorded in microseconds, in milliseconds.
pub fn percentile_ms(histogram: &hdrhistogram::Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// The directory a benchmark works in: `data_dir` (created if missing), or a new temporary
/// directory named after the benchmark, removed when the returned guard drops.
pub fn work_dir(
    data_dir: Option<&Path>,
    bench: &str,
) -> anyhow::Result<(Option<TempDir>, PathBuf)> {
    let (temp, dir) = match data_dir {
        Some(dir) => (None, dir.to_owned()),
        None => {
            let temp = tempfile::Builder::new()
                .prefix(&format!("sluice-bench-{bench}-"))
                .tempdir()
                .context("creating a temporary directory")?;
            let dir = temp.path().to_owned();
            (Some(temp), dir)
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok((temp, dir))
}
