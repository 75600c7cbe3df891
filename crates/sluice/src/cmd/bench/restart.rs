//! `sluice bench restart`: how long sluice takes to process again after a restart with many
//! open windows. Writes `--states` events with distinct users, runs a metric grouping by user
//! over a day-long window (so every (user, window) stays open) through the real exactly-once
//! pipelines until everything is committed, stops, and then times a fresh start of the
//! pipelines — claiming each partition, loading and decoding its open windows from the store,
//! restoring the processors — until every partition processes again.
//!
//! With `--dedup-ids N`, it also times the collector's start with N message ids appended
//! within the dedup window: once reading them back from the log alone (no snapshot), and then
//! from its dedup snapshot plus the 1 % of records appended after it (a restart after
//! `kill -9`).

use crate::config::ConfigArgs;
use crate::{UserError, log_tools};
use anyhow::Context;
use clap::Args;
use sluice_core::time::now_millis;
use sluice_log::{AckMode, Log, LogBackend, Record, TopicSpec};
use sluice_pipelines::{MetricSpec, PartitionState, PipelineSettings, Pipelines};
use sluice_store::{Housekeeping, SqliteStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct RestartBenchArgs {
    /// Open (key, window) states to restore.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    states: u64,
    /// Partitions of the events topic.
    #[arg(long, value_name = "N", default_value_t = 4)]
    partitions: u32,
    /// Where to put the log and store [default: a temporary directory, removed afterwards].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Timed restarts; the median is reported.
    #[arg(long, value_name = "N", default_value_t = 3)]
    runs: u32,
    /// Also time the collector's start with this many message ids in the dedup window (0:
    /// not timed). `ingest.dedup-capacity` is raised to hold them all.
    #[arg(long, value_name = "N", default_value_t = 0)]
    dedup_ids: u64,
}

const METRIC: &str = "CREATE METRIC per_user AS SELECT anonymous_id AS user, COUNT(*) AS events \
                      FROM events GROUP BY user, TUMBLE(timestamp, INTERVAL '1' DAY) \
                      WITH (out_of_orderness = '1h')";

pub fn run(args: RestartBenchArgs) -> anyhow::Result<()> {
    if args.states == 0 || args.partitions == 0 || args.runs == 0 {
        return Err(
            UserError("--states, --partitions and --runs must be larger than 0".into()).into(),
        );
    }
    let mut config = ConfigArgs::default()
        .load(&[])
        .map_err(|error| UserError(error.to_string()))?;
    let (_temp, dir) = super::work_dir(args.data_dir.as_deref(), "restart")?;
    config.log.ack = AckMode::Write;
    let runtime = log_tools::runtime()?;
    runtime.block_on(async {
        let log = Arc::new(LogBackend::open(&config.log, &dir).await.map_err(log_tools::user_or_internal)?);
        let topic = &config.stream.source_topic;
        log.create_topic(TopicSpec { name: topic.clone(), partitions: args.partitions, retention_age: None, retention_bytes: None })
            .await
            .map_err(log_tools::user_or_internal)?;
        let existing: u64 = log.describe(Some(topic)).await?[0].partitions.iter().map(|p| p.end_offset).sum();
        let now = now_millis();
        let day_start = now - now.rem_euclid(86_400_000);
        if existing < args.states {
            let started = Instant::now();
            for chunk in (existing..args.states).collect::<Vec<_>>().chunks(4096) {
                let mut by_partition: Vec<Vec<Record>> = vec![Vec::new(); args.partitions as usize];
                for &user in chunk {
                    let time = day_start + (user as i64 % 3_600_000);
                    let json = format!(
                        r#"{{"message_id":"r{user}","tenant":"bench","type":"track","event":"Seen","anonymous_id":"user-{user}","timestamp":{time},"received_at":{time}}}"#
                    );
                    by_partition[(user % u64::from(args.partitions)) as usize].push(Record::new(None, json.into_bytes(), time));
                }
                for (partition, records) in by_partition.into_iter().enumerate() {
                    if !records.is_empty() {
                        log.append(topic, partition as u32, records).await?;
                    }
                }
            }
            println!("write: {} events with distinct users in {:.1} s", args.states - existing, started.elapsed().as_secs_f64());
        }
        let store_path = dir.join("bench-restart.db");
        let settings = PipelineSettings { stream: config.stream.clone(), checkpoint_interval: config.store.checkpoint_interval(), retry_max_backoff: config.store.retry_max_backoff(), erased: Default::default(), history: None };
        let specs = [MetricSpec { sql: METRIC.into(), backfill: true }];

        let started = Instant::now();
        let pipelines = Pipelines::start(Arc::clone(&log), SqliteStore::open(&store_path)?, settings.clone(), &specs).await?;
        loop {
            let status = pipelines.status(Some("per_user")).await?.pop().context("metric status")?;
            if status.lag == 0 {
                break;
            }
            if let Some(error) = status.error {
                anyhow::bail!("pipeline failed: {error}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pipelines.checkpoint("per_user").await?;
        pipelines.stop().await;
        drop(pipelines);
        let store = SqliteStore::open(&store_path)?;
        println!(
            "process: {} events into open windows in {:.1} s; store {} MB",
            args.states,
            started.elapsed().as_secs_f64(),
            store.size().await? / 1_000_000
        );
        drop(store);

        let mut times = Vec::new();
        for run in 1..=args.runs {
            let started = Instant::now();
            let pipelines = Pipelines::start(Arc::clone(&log), SqliteStore::open(&store_path)?, settings.clone(), &specs).await?;
            loop {
                let status = pipelines.status(Some("per_user")).await?.pop().context("metric status")?;
                if status.partitions.iter().all(|p| p.state == PartitionState::Running) {
                    break;
                }
                if let Some(error) = status.error {
                    anyhow::bail!("pipeline failed: {error}");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let seconds = started.elapsed().as_secs_f64();
            println!("restart {run}: processing again after {seconds:.3} s with {} open states", args.states);
            times.push(seconds);
            pipelines.stop().await;
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!("median restart: {median:.3} s");
        println!("{}", serde_json::json!({ "restart_seconds": median, "states": args.states, "partitions": args.partitions }));
        if args.dedup_ids > 0 {
            dedup_restart(&log, &config, &dir, &args).await?;
        }
        Arc::try_unwrap(log).map_err(|_| anyhow::anyhow!("log still in use"))?.close().await?;
        anyhow::Ok(())
    })
}

/// Times the collector's start with `--dedup-ids` ids of the window: from the log alone, then
/// from its snapshot and the records appended after it.
async fn dedup_restart(
    log: &Arc<LogBackend>,
    config: &crate::config::Config,
    dir: &std::path::Path,
    args: &RestartBenchArgs,
) -> anyhow::Result<()> {
    let mut ingest = config.ingest.clone();
    ingest.events_topic = "bench-dedup".into();
    ingest.dead_letter_topic = "bench-dedup.dlq".into();
    ingest.dedup_capacity = ingest
        .dedup_capacity
        .max(args.dedup_ids as usize * 2 + 4096);
    for name in [&ingest.events_topic, &ingest.dead_letter_topic] {
        let spec = TopicSpec {
            name: name.clone(),
            partitions: args.partitions,
            retention_age: None,
            retention_bytes: None,
        };
        match log.create_topic(spec).await {
            Ok(()) | Err(sluice_log::LogError::TopicMismatch { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let append = |from: u64, to: u64| {
        let (log, topic) = (Arc::clone(log), ingest.events_topic.clone());
        async move {
            let now = now_millis();
            for chunk in (from..to).collect::<Vec<_>>().chunks(4096) {
                let mut by_partition: Vec<Vec<Record>> = vec![Vec::new(); args.partitions as usize];
                for &id in chunk {
                    let json = format!(
                        r#"{{"message_id":"dedup-{id}","tenant":"bench","type":"track","event":"Seen","anonymous_id":"user-{id}","timestamp":{now},"received_at":{now}}}"#
                    );
                    by_partition[(id % u64::from(args.partitions)) as usize].push(Record::new(
                        None,
                        json.into_bytes(),
                        now,
                    ));
                }
                for (partition, records) in by_partition.into_iter().enumerate() {
                    if !records.is_empty() {
                        log.append(&topic, partition as u32, records).await?;
                    }
                }
            }
            anyhow::Ok(())
        }
    };
    let snapshot = sluice_ingest::dedup::snapshot::path(dir);
    let _ = std::fs::remove_file(&snapshot);
    append(0, args.dedup_ids).await?;
    let keys = Arc::new(sluice_core::access::KeyDirectory::new(Vec::new()));
    let start = || {
        sluice_ingest::Collector::new(
            Arc::clone(log),
            Arc::clone(&keys),
            config.limits.clone(),
            ingest.clone(),
            Some(snapshot.clone()),
        )
    };
    let started = Instant::now();
    let collector = start().await?;
    println!(
        "dedup: start reading {} ids back from the log (no snapshot): {:.3} s, {} remembered",
        args.dedup_ids,
        started.elapsed().as_secs_f64(),
        collector.dedup().len()
    );
    let started = Instant::now();
    let written = collector.save_snapshot().await?.context("snapshot path")?;
    println!(
        "dedup: snapshot of {} ids, {:.1} MB, written in {:.3} s",
        written.ids,
        written.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    drop(collector);
    append(args.dedup_ids, args.dedup_ids + args.dedup_ids / 100).await?;
    let mut times = Vec::new();
    for run in 1..=args.runs {
        let started = Instant::now();
        let collector = start().await?;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "dedup restart {run}: snapshot + {} records after it: {seconds:.3} s, {} remembered",
            args.dedup_ids / 100,
            collector.dedup().len()
        );
        times.push(seconds);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!("median dedup restart: {median:.3} s");
    println!(
        "{}",
        serde_json::json!({ "dedup_restart_seconds": median, "dedup_ids": args.dedup_ids })
    );
    Ok(())
}
