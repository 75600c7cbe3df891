//! `sluice bench archive`: the raw event archive alone. Writes N synthetic events (20 tenants
//! of Zipf-skewed sizes, an hour of event time by default) into a topic of the file log in the
//! bench's directory (P partitions), then runs the archivers `sluice serve` runs over it into
//! a fresh archive and store, timed until every partition's position is committed at the end
//! of the topic. Repeated `--runs` times.
//!
//! Each run then reads the archive back as a replay from before the log's start does (every
//! partition at once through the archive's history, in offset order, events rebuilt as the
//! log held them), checks that it got every event, and times that too.
//!
//! The last stdout line is one JSON object: events/s (median), events/s per CPU-second, the
//! archive's bytes per event and files, the log's bytes per event, the read-back events/s
//! (median), and the peak RSS.

use super::backfill::peak_rss_bytes;
use super::stream::{cpu_seconds, write_events};
use crate::UserError;
use clap::Args;
use sluice_archive::history::ArchiveHistory;
use sluice_archive::promote::ColumnConfig;
use sluice_archive::target::Target;
use sluice_archive::{Archive, ArchiveConfig, Location};
use sluice_core::config::{ByteSize, HumanDuration};
use sluice_core::synthetic::Synthetic;
use sluice_log::{AckMode, Log, LogBackend};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct ArchiveBenchArgs {
    /// Events to write and archive.
    #[arg(long, value_name = "N", default_value_t = 2_000_000)]
    events: u64,
    /// Partitions of the source topic.
    #[arg(long, value_name = "P", default_value_t = 2)]
    partitions: u32,
    /// Runs, each into a fresh archive; the median is reported.
    #[arg(long, value_name = "R", default_value_t = 3)]
    runs: u32,
    /// `archive.roll-bytes` of the runs.
    #[arg(long, value_name = "SIZE", default_value = "64MiB")]
    roll_bytes: ByteSize,
    /// A promoted column for every tenant, `PATH:TYPE` (`properties.duration_ms:double`;
    /// repeatable): measures what `[[archive.columns]]` cost.
    #[arg(long = "column", value_name = "PATH:TYPE")]
    columns: Vec<String>,
    /// Where to put the log, the store and the archives [default: a temporary directory,
    /// removed afterwards]. Events written by an earlier run of the same shape are reused;
    /// each run's archive and store are removed after it.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub fn run(args: ArchiveBenchArgs) -> anyhow::Result<()> {
    if args.events == 0 || !(1..=1024).contains(&args.partitions) || args.runs == 0 {
        return Err(UserError(
            "--events and --runs must be larger than 0, --partitions 1 to 1024".into(),
        )
        .into());
    }
    let mut columns = Vec::new();
    for column in &args.columns {
        let (path, kind) = column.split_once(':').ok_or_else(|| {
            UserError(format!(
                "--column {column:?}: write PATH:TYPE, e.g. properties.duration_ms:double"
            ))
        })?;
        columns.push(ColumnConfig {
            tenant: None,
            path: path.to_owned(),
            name: None,
            kind: kind.to_owned(),
        });
    }
    let config = ArchiveConfig {
        enabled: true,
        url: String::new(),
        roll_bytes: args.roll_bytes,
        // Batches roll by size while the topic is read; the last one of each partition 1 s
        // after its first event (part of the time measured).
        roll_age: HumanDuration(Duration::from_secs(1)),
        retention: HumanDuration(Duration::ZERO),
        tenant_retention: Default::default(),
        columns,
        streams: Vec::new(),
    };
    let mut problems = Vec::new();
    sluice_core::config::Validate::validate(&config, "archive", &mut problems);
    if let Some(problem) = problems.first() {
        return Err(UserError(problem.to_string()).into());
    }
    let (_temp, dir) = super::work_dir(args.data_dir.as_deref(), "archive")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut log_config: sluice_log::LogConfig =
        toml::from_str::<toml::Table>(crate::config::DEFAULTS)?["log"]
            .clone()
            .try_into()?;
    log_config.ack = AckMode::Write;
    let log = Arc::new(runtime.block_on(LogBackend::open(&log_config, &dir))?);
    let topic = format!("bench.archive.{}x{}", args.events, args.partitions);
    println!(
        "sluice bench archive: {} events, {} partitions, in {}",
        args.events,
        args.partitions,
        dir.display()
    );
    let source = Synthetic::new(15, 1_714_564_800_000);
    match runtime.block_on(write_events(
        &*log,
        &topic,
        args.events,
        args.partitions,
        source,
    ))? {
        Some((seconds, bytes)) => println!(
            "write: {} events ({:.0} B on average) in {seconds:.2} s",
            args.events,
            bytes as f64 / args.events as f64
        ),
        None => println!("write: reusing the events already in topic {topic}"),
    }
    let log_bytes: u64 = runtime.block_on(log.describe(Some(&topic)))?[0]
        .partitions
        .iter()
        .map(|partition| partition.bytes)
        .sum();

    let mut rates = Vec::new();
    let mut per_core = Vec::new();
    let mut last = (0, 0);
    let mut reads = Vec::new();
    for run in 1..=args.runs {
        let root = dir.join(format!("bench-archive-{run}"));
        let store_path = dir.join(format!("bench-archive-{run}.db"));
        let (seconds, cpu) = runtime.block_on(archive_once(
            Arc::clone(&log),
            &topic,
            &root,
            &store_path,
            &config,
            args.events,
        ))?;
        let files = runtime.block_on(
            Target::open(&Location::Dir(root.clone()))?.list_sized("events/", ".parquet"),
        )?;
        let (bytes, files) = (files.iter().map(|(_, size)| size).sum::<u64>(), files.len());
        let (read_seconds, read_cpu) =
            runtime.block_on(read_back(&root, &topic, args.partitions, args.events))?;
        let _ = std::fs::remove_dir_all(&root);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", store_path.display()));
        }
        let rate = args.events as f64 / seconds;
        println!(
            "run {run}: {} events in {seconds:.3} s = {rate:.0} events/s; CPU {cpu:.3} s = {:.0} events/s per core; {files} files, {:.1} B per event",
            args.events,
            args.events as f64 / cpu,
            bytes as f64 / args.events as f64
        );
        println!(
            "run {run}: read back in {read_seconds:.3} s = {:.0} events/s; CPU {read_cpu:.3} s",
            args.events as f64 / read_seconds
        );
        rates.push(rate);
        reads.push(args.events as f64 / read_seconds);
        per_core.push(args.events as f64 / cpu);
        last = (bytes, files);
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (rate, core, read) = (
        median(&mut rates),
        median(&mut per_core),
        median(&mut reads),
    );
    println!(
        "median of {} runs: {rate:.0} events/s, {core:.0} per core; read back {read:.0} events/s",
        args.runs
    );
    println!(
        "{}",
        serde_json::json!({
            "events": args.events,
            "partitions": args.partitions,
            "runs": args.runs,
            "events_per_sec": rate.round(),
            "per_core": core.round(),
            "archive_bytes_per_event": (last.0 as f64 / args.events as f64 * 10.0).round() / 10.0,
            "log_bytes_per_event": (log_bytes as f64 / args.events as f64 * 10.0).round() / 10.0,
            "files": last.1,
            "read_back_events_per_sec": read.round(),
            "peak_rss_bytes": peak_rss_bytes()?,
        })
    );
    Ok(())
}

/// One run: archivers over the whole topic into `root`, timed until every partition's
/// committed position is its end. Returns the wall and CPU seconds.
async fn archive_once(
    log: Arc<LogBackend>,
    topic: &str,
    root: &Path,
    store_path: &Path,
    config: &ArchiveConfig,
    events: u64,
) -> anyhow::Result<(f64, f64)> {
    let store: sluice_store::StoreBackend = sluice_store::SqliteStore::open(store_path)?.into();
    let ends: u64 = log.describe(Some(topic)).await?[0]
        .partitions
        .iter()
        .map(|partition| partition.end_offset)
        .sum();
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let archive = Archive::start(
        Arc::clone(&log),
        store.clone(),
        sluice_archive::Archived::events(topic),
        Location::Dir(root.to_owned()),
        config,
        Arc::default(),
        sluice_archive::Partitions::All,
    )
    .await?;
    loop {
        let committed: u64 = store
            .positions(sluice_archive::sink::PIPELINE)
            .await?
            .iter()
            .map(|(_, position)| position.offset)
            .sum();
        if committed >= ends {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "the archive did not catch up within an hour ({committed} of {events} events)"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu_before;
    archive.stop().await;
    Ok((seconds, cpu))
}

/// Reads every partition of the archive at `root` back through its history, all partitions
/// at once, and checks every event came back. Returns the wall and CPU seconds.
async fn read_back(
    root: &Path,
    topic: &str,
    partitions: u32,
    events: u64,
) -> anyhow::Result<(f64, f64)> {
    use sluice_log::history::History;
    let history = Arc::new(ArchiveHistory::new(
        Target::open(&Location::Dir(root.to_owned()))?,
        topic,
    ));
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let readers: Vec<_> = (0..partitions)
        .map(|partition| {
            let history = Arc::clone(&history);
            tokio::spawn(async move {
                let (mut next, mut count) = (0, 0u64);
                loop {
                    let records = history.read(partition, next, u64::MAX, 1 << 20).await?;
                    let Some(last) = records.last() else {
                        return Ok::<_, sluice_log::LogError>(count);
                    };
                    next = last.offset + 1;
                    count += records.len() as u64;
                }
            })
        })
        .collect();
    let mut read = 0;
    for reader in readers {
        read += reader.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu_before;
    anyhow::ensure!(
        read == events,
        "read {read} events back from the archive, not {events}"
    );
    Ok((seconds, cpu))
}
