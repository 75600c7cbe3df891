//! `sluice bench stream`: the stream engine's throughput from the file log. Writes N synthetic
//! realistic events (page views with URL and duration, clicks, orders with revenue; many users;
//! bounded disorder) to a topic of the file log, then runs a metric over them from offset 0,
//! one processor per partition as `sluice serve` would, reading through the `Log` trait
//! (`read_into`, the partition task's read). Each
//! run is timed (wall clock) and its CPU time taken from the kernel (`/proc/self/stat`: every
//! thread of the process, the log's included), so "per core" is events per CPU-second used,
//! not a guess from a thread count. The median of the runs is reported.

use crate::config::ConfigArgs;
use crate::{UserError, log_tools};
use anyhow::Context;
use clap::Args;
use sluice_core::synthetic::{EXAMPLE_METRIC, Synthetic};
use sluice_log::{
    AckMode, FileLog, Log, ReadBuffer, ReadOptions, Record, TopicSpec, partition_for_key,
};
use sluice_stream::engine::output::Outputs;
use sluice_stream::engine::{Message, Processor};
use sluice_stream::sql::parse_metric;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct StreamBenchArgs {
    /// Events to write and process.
    #[arg(long, value_name = "N", default_value_t = 2_000_000)]
    events: u64,
    /// Where to put the log [default: a temporary directory, removed afterwards]. With a
    /// directory, events written by an earlier run with the same --events and --partitions are
    /// reused.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The metric to run [default: the DESIGN.md example, page views per URL per minute].
    /// Repeat it to run several together, as a pipeline of derived streams does (`--metric
    /// "CREATE STREAM …" --metric "CREATE SESSIONS …" --metric "CREATE IDENTITY …"`): one
    /// processor per partition runs them all (each its own pipeline, exactly once).
    #[arg(long = "metric", value_name = "SQL")]
    metrics: Vec<String>,
    /// Partitions of the benchmark topic (one processor each).
    #[arg(long, value_name = "N", default_value_t = 1)]
    partitions: u32,
    /// Timed runs over the same events; the median is reported [default: 3; 7 pairs with
    /// --checkpoint-interval, whose cost is a difference of two noisy figures].
    #[arg(long, value_name = "N")]
    runs: Option<u32>,
    /// Config file for the [log] and [stream] settings; keys it omits keep defaults.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run the metric through the exactly-once pipelines `serve` uses — partition tasks,
    /// checkpoints of changed windows and offsets committed to a SQLite store every this often
    /// (e.g. 1s, the default of store.checkpoint-interval) — to measure what exactly-once
    /// costs: each run is then a pair, bare processors and pipelines in alternating order, and
    /// the cost is the median of the pairs' differences. An exactly-once run is timed until
    /// its last checkpoint commits, so runs should last several intervals (a note says when
    /// they do not).
    #[arg(long, value_name = "DURATION")]
    checkpoint_interval: Option<sluice_core::config::HumanDuration>,
}

/// Events per append while writing.
const WRITE_BATCH: usize = 1_000;

/// One timed run.
pub(super) struct Run {
    pub(super) seconds: f64,
    pub(super) cpu_seconds: f64,
    events: u64,
    /// Window updates and late events, when the run counted them itself (the pipelines'
    /// runs leave them to the pipelines).
    outputs: Option<(u64, u64)>,
    /// Windows (or sessions) open at the end, when the run counted them itself.
    open: Option<u64>,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn per_core(&self) -> f64 {
        self.events as f64 / self.cpu_seconds.max(1e-9)
    }
}

pub fn run(args: StreamBenchArgs) -> anyhow::Result<()> {
    let runs = args.runs.unwrap_or(if args.checkpoint_interval.is_some() {
        7
    } else {
        3
    });
    if args.events == 0 || args.partitions == 0 || runs == 0 {
        return Err(
            UserError("--events, --partitions and --runs must be larger than 0".into()).into(),
        );
    }
    let config = ConfigArgs {
        config: args.config.clone(),
        data_dir: None,
    }
    .load(&[])
    .map_err(|error| UserError(error.to_string().trim_end().to_owned()))?;
    let sqls: Vec<&str> = if args.metrics.is_empty() {
        vec![EXAMPLE_METRIC]
    } else {
        args.metrics.iter().map(String::as_str).collect()
    };
    let plans = sqls
        .iter()
        .map(|sql| {
            let plan = parse_metric(sql, &config.stream.metric_defaults())
                .map_err(|error| UserError(format!("--metric: {error}")))?;
            if plan.source != sluice_stream::plan::Source::Events {
                return Err(UserError(format!(
                    "--metric {:?} reads FROM {}: the bench runs definitions over its events only",
                    plan.name,
                    plan.source.topic("events")
                )));
            }
            Ok(Arc::new(plan))
        })
        .collect::<Result<Vec<_>, UserError>>()?;
    let names: Vec<&str> = plans.iter().map(|plan| plan.name.as_str()).collect();
    let (_temp, dir) = super::work_dir(args.data_dir.as_deref(), "stream")?;
    let mut log_config = config.log.clone();
    // Writing the input is not what is measured: acknowledge at write(2).
    log_config.ack = AckMode::Write;
    let log = FileLog::open(&dir.join("log"), &log_config).map_err(log_tools::user_or_internal)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.partitions.clamp(1, 64) as usize)
        .enable_all()
        .build()?;
    let topic = format!("bench.stream.{}x{}", args.events, args.partitions);
    println!(
        "sluice bench stream: {} events in {} partition{}, {:?}, in {}",
        args.events,
        args.partitions,
        if args.partitions == 1 { "" } else { "s" },
        names,
        dir.display()
    );

    let written = runtime.block_on(write_events(
        &log,
        &topic,
        args.events,
        args.partitions,
        Synthetic::new(42, 1_714_564_800_000),
    ))?;
    if let Some((seconds, bytes)) = written {
        println!(
            "write: {} events ({:.0} B on average) in {seconds:.2} s",
            args.events,
            bytes as f64 / args.events as f64
        );
    } else {
        println!(
            "write: reusing the {} events already in topic {topic}",
            args.events
        );
    }

    // An untimed pass first, so that every timed run finds the topic in the page cache.
    runtime.block_on(process(&log, &topic, &args, &plans, &config.stream))?;
    let mut bare = Vec::new();
    let mut exactly_once = Vec::new();
    for index in 1..=runs {
        let Some(interval) = args.checkpoint_interval else {
            let run = runtime.block_on(process(&log, &topic, &args, &plans, &config.stream))?;
            report(&format!("run {index}"), &run);
            bare.push(run);
            continue;
        };
        // Bare and exactly-once in pairs, in alternating order, so both see the same machine.
        let mut pair = [None, None];
        let order: [usize; 2] = if index % 2 == 1 { [0, 1] } else { [1, 0] };
        for which in order {
            let run = if which == 0 {
                runtime.block_on(process(&log, &topic, &args, &plans, &config.stream))?
            } else {
                runtime.block_on(process_exactly_once(
                    &log,
                    &topic,
                    &dir,
                    &sqls,
                    &config,
                    interval.get(),
                ))?
            };
            let label = ["bare", "exactly-once"][which];
            report(&format!("run {index}, {label}"), &run);
            pair[which] = Some(run);
        }
        let [Some(b), Some(e)] = pair else {
            unreachable!("both runs of the pair ran")
        };
        println!(
            "run {index}: checkpointing cost {:.1} % of events/s per core, {:.1} % of events/s",
            cost(b.per_core(), e.per_core()),
            cost(b.per_second(), e.per_second())
        );
        bare.push(b);
        exactly_once.push(e);
    }
    runtime.block_on(log.close())?;

    let (events_per_sec, per_core) = medians(&bare);
    println!(
        "median of {} run{}: {events_per_sec:.0} events/s, {per_core:.0} events/s per core",
        runs,
        if runs == 1 { "" } else { "s" }
    );
    let mut summary = serde_json::json!({
        "events_per_sec": events_per_sec.round(),
        "per_core": per_core.round(),
        "events": args.events,
        "partitions": args.partitions,
        "runs": runs,
        "metric": names.join(","),
        // Compare with a run of a plan that keeps no state for the bytes per open window.
        "peak_rss_bytes": super::backfill::peak_rss_bytes()?,
    });
    if let Some(open) = bare.last().and_then(|run| run.open) {
        summary["open_windows_at_end"] = open.into();
    }
    if let Some(interval) = args.checkpoint_interval {
        let (eo_per_sec, eo_per_core) = medians(&exactly_once);
        let pair_costs = |rate: fn(&Run) -> f64| {
            let mut costs: Vec<f64> = bare
                .iter()
                .zip(&exactly_once)
                .map(|(b, e)| cost(rate(b), rate(e)))
                .collect();
            median(&mut costs)
        };
        let (cost_per_core, cost_per_second) =
            (pair_costs(Run::per_core), pair_costs(Run::per_second));
        println!(
            "exactly-once, median of {} run{}: {eo_per_sec:.0} events/s, {eo_per_core:.0} events/s per core; checkpointing cost (median of the pairs) {cost_per_second:.1} % of events/s, {cost_per_core:.1} % of events/s per core",
            runs,
            if runs == 1 { "" } else { "s" }
        );
        // The last checkpoint holds every window changed since the one before: in a run of
        // one or two intervals that is most of the state, and the figure says more about one
        // flush of everything than about checkpointing in a running stream.
        let mut seconds: Vec<f64> = exactly_once.iter().map(|run| run.seconds).collect();
        let intervals = median(&mut seconds) / interval.get().as_secs_f64();
        if intervals < 4.0 {
            println!(
                "note: an exactly-once run lasted {intervals:.1} checkpoint intervals, so its last checkpoint (all windows changed since the one before) weighs on the cost; \
                 for the cost in a running stream, give --events enough for 4 intervals or more (e.g. --events {})",
                ((args.events as f64 * 4.0 / intervals) / 1e6).ceil() as u64 * 1_000_000
            );
        }
        summary["checkpoint_interval_ms"] = (interval.get().as_millis() as u64).into();
        summary["exactly_once_events_per_sec"] = eo_per_sec.round().into();
        summary["exactly_once_per_core"] = eo_per_core.round().into();
        let tenth = |value: f64| (value * 10.0).round() / 10.0;
        summary["checkpoint_cost_percent"] = tenth(cost_per_second).into();
        summary["checkpoint_cost_per_core_percent"] = tenth(cost_per_core).into();
    }
    println!("{summary}");
    Ok(())
}

fn report(label: &str, run: &Run) {
    let outputs = match run.outputs {
        Some((updates, late)) => format!("; {updates} window updates, {late} late"),
        None => String::new(),
    };
    let outputs = match run.open {
        Some(open) => format!("{outputs}, {open} windows open at the end"),
        None => outputs,
    };
    println!(
        "{label}: {} events in {:.3} s = {:.0} events/s; CPU {:.3} s = {:.0} events/s per core{outputs}",
        run.events,
        run.seconds,
        run.per_second(),
        run.cpu_seconds,
        run.per_core(),
    );
}

/// How much slower `with` is than `without`, in percent (negative: faster).
fn cost(without: f64, with: f64) -> f64 {
    (1.0 - with / without) * 100.0
}

/// Median events/s and events/s per core of some runs.
fn medians(runs: &[Run]) -> (f64, f64) {
    let mut rates: Vec<f64> = runs.iter().map(Run::per_second).collect();
    let mut per_core: Vec<f64> = runs.iter().map(Run::per_core).collect();
    (median(&mut rates), median(&mut per_core))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// Writes the events unless the topic already holds them; returns the time and bytes taken.
/// Writes `events` from `source` into a new `topic` of `partitions`, keyed by user as the
/// collector keys them; `None` when the topic already holds that many (an earlier run's).
pub(super) async fn write_events(
    log: &impl Log,
    topic: &str,
    events: u64,
    partitions: u32,
    mut source: Synthetic,
) -> anyhow::Result<Option<(f64, u64)>> {
    let existing = log.describe(Some(topic)).await.ok();
    if let Some(info) = existing.and_then(|topics| topics.into_iter().next()) {
        let held: u64 = info
            .partitions
            .iter()
            .map(|p| p.end_offset - p.start_offset)
            .sum();
        if held == events {
            return Ok(None);
        }
        return Err(UserError(format!(
            "topic {topic} in this data dir holds {held} events, not {events}: use another --data-dir"
        ))
        .into());
    }
    log.create_topic(TopicSpec {
        name: topic.to_owned(),
        partitions,
        retention_age: None,
        retention_bytes: None,
    })
    .await
    .map_err(log_tools::user_or_internal)?;
    let started = Instant::now();
    let mut pending: Vec<Vec<Record>> = vec![Vec::new(); partitions as usize];
    let mut bytes = 0u64;
    for _ in 0..events {
        let (key, json) = source.next_event();
        let partition = partition_for_key(key.as_bytes(), partitions);
        bytes += json.len() as u64;
        let timestamp = sluice_core::time::now_millis();
        let batch = &mut pending[partition as usize];
        batch.push(Record::new(Some(key.into_bytes().into()), json, timestamp));
        if batch.len() == WRITE_BATCH {
            log.append(topic, partition, std::mem::take(batch))
                .await
                .map_err(log_tools::user_or_internal)?;
        }
    }
    for (partition, batch) in pending.into_iter().enumerate() {
        if !batch.is_empty() {
            log.append(topic, partition as u32, batch)
                .await
                .map_err(log_tools::user_or_internal)?;
        }
    }
    Ok(Some((started.elapsed().as_secs_f64(), bytes)))
}

/// One timed run: a processor per partition reads its partition from offset 0 to the end.
async fn process(
    log: &FileLog,
    topic: &str,
    args: &StreamBenchArgs,
    plans: &[Arc<sluice_stream::plan::MetricPlan>],
    stream: &sluice_stream::config::StreamConfig,
) -> anyhow::Result<Run> {
    let ends: Vec<u64> = log
        .describe(Some(topic))
        .await
        .map_err(log_tools::user_or_internal)?
        .into_iter()
        .next()
        .map(|info| info.partitions.iter().map(|p| p.end_offset).collect())
        .unwrap_or_default();
    let options = ReadOptions {
        max_bytes: stream.read_max_bytes.as_usize(),
        max_wait: Duration::ZERO,
    };
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.partitions)
        .map(|partition| {
            let log = log.clone();
            let topic = topic.to_owned();
            let plans = plans.to_vec();
            let end = ends.get(partition as usize).copied().unwrap_or(0);
            let config = stream.processor();
            tokio::spawn(async move {
                let mut processor = Processor::new(partition, 0, config).without_checkpoints();
                for plan in &plans {
                    processor.add_metric(plan.clone())?;
                }
                let mut out = Outputs::default();
                let mut updates = 0u64;
                let mut buffer = ReadBuffer::new();
                while processor.next_offset() < end {
                    log.read_into(
                        &topic,
                        partition,
                        processor.next_offset(),
                        options,
                        &mut buffer,
                    )
                    .await?;
                    if buffer.is_empty() {
                        break;
                    }
                    let now = sluice_core::time::now_millis();
                    processor.handle(
                        Message::Buffered {
                            records: &buffer,
                            now,
                        },
                        &mut out,
                    )?;
                    updates += out.updates.len() as u64;
                    out.updates.clear();
                    out.late.clear();
                    out.records.clear();
                }
                let stats = processor.stats();
                let mut open = 0;
                for plan in &plans {
                    open += processor.open_window_count(&plan.name)? as u64;
                }
                anyhow::Ok((stats.records, updates, stats.late, open))
            })
        })
        .collect();
    let (mut events, mut updates, mut late, mut open) = (0, 0, 0, 0);
    for task in tasks {
        let (task_events, task_updates, task_late, task_open) = task.await??;
        events += task_events;
        updates += task_updates;
        late += task_late;
        open += task_open;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds()? - cpu_before;
    Ok(Run {
        seconds,
        cpu_seconds,
        events,
        outputs: Some((updates, late)),
        open: Some(open),
    })
}

/// One run through the real pipelines: a fresh store, the metric with backfill over the bench
/// topic, timed until every partition has committed the whole topic.
async fn process_exactly_once(
    log: &FileLog,
    topic: &str,
    dir: &std::path::Path,
    sqls: &[&str],
    config: &crate::config::Config,
    interval: Duration,
) -> anyhow::Result<Run> {
    let store = fresh_store(dir, config, sqls).await?;
    let log = sluice_log::LogBackend::File(log.clone());
    let (run, pipelines, _) = run_backfill(&log, topic, store, config, interval, sqls).await?;
    pipelines.stop().await;
    Ok(run)
}

/// The store `config.store.url` names, without the results of metrics `sqls` of an earlier run: a
/// new SQLite file in `dir` (an earlier run's is removed) for the default URL, or the
/// PostgreSQL database named, where the metric is deleted if it exists (give the bench a
/// database or schema of its own: its size is counted as the bench's).
pub(super) async fn fresh_store(
    dir: &std::path::Path,
    config: &crate::config::Config,
    sqls: &[&str],
) -> anyhow::Result<sluice_store::StoreBackend> {
    use sluice_store::StoreLocation;
    let url = config.store.url.trim();
    let location = if url.is_empty() {
        StoreLocation::Sqlite(dir.join("bench-store.db"))
    } else {
        config.store.location(dir).map_err(UserError)?
    };
    match location {
        StoreLocation::Sqlite(path) => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            let store = sluice_store::SqliteStore::open(&path)
                .map_err(|error| UserError(error.to_string()))?;
            Ok(store.into())
        }
        StoreLocation::Postgres(url) => {
            let store = sluice_store::PostgresStore::connect(&url)
                .await
                .map_err(|error| UserError(error.to_string()))?;
            use sluice_store::Catalogue as _;
            for sql in sqls {
                let name = sluice_stream::sql::parse_metric(sql, &config.stream.metric_defaults())
                    .map_err(|error| UserError(error.to_string()))?
                    .name;
                store.delete_metric(&name).await?;
            }
            Ok(store.into())
        }
    }
}

/// Runs metrics `sqls` over `topic` with backfill through the exactly-once pipelines `serve`
/// uses, checkpointing every `interval`, timed until every partition of each has caught up
/// and a checkpoint covering the end has committed. Returns the run, the running pipelines
/// and the first metric's name.
pub(super) async fn run_backfill(
    log: &sluice_log::LogBackend,
    topic: &str,
    store: sluice_store::StoreBackend,
    config: &crate::config::Config,
    interval: Duration,
    sqls: &[&str],
) -> anyhow::Result<(
    Run,
    sluice_pipelines::Pipelines<sluice_log::LogBackend>,
    String,
)> {
    use sluice_pipelines::{MetricSpec, PipelineSettings, Pipelines};
    let mut stream = config.stream.clone();
    stream.source_topic = topic.to_owned();
    stream.late_topic = format!("{topic}.late");
    let settings = PipelineSettings {
        stream,
        checkpoint_interval: interval,
        retry_max_backoff: config.store.retry_max_backoff(),
        erased: Default::default(),
        history: None,
    };
    let events: u64 = log
        .describe(Some(topic))
        .await?
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.end_offset)
        .sum();
    // Each status asks the log for its end offsets: cheap in the file log, requests to the
    // brokers in Kafka, which are asked less often.
    let poll = if matches!(log, sluice_log::LogBackend::File(_)) {
        Duration::from_millis(2)
    } else {
        Duration::from_millis(50)
    };
    let log = Arc::new(log.clone());
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let pipelines = Pipelines::start(
        log,
        store,
        settings,
        &sqls
            .iter()
            .map(|sql| MetricSpec {
                sql: (*sql).to_owned(),
                backfill: true,
            })
            .collect::<Vec<_>>(),
    )
    .await?;
    let names: Vec<String> = pipelines
        .plans()
        .iter()
        .map(|(plan, _)| plan.name.clone())
        .collect();
    let name = names.first().cloned().context("the metric runs")?;
    // Processing reaches the end, then one checkpoint commits the rest: the run is timed until
    // every event is in the store, without waiting for the next scheduled checkpoint.
    let mut unanswered = None;
    loop {
        // A log that does not answer (brokers busy serving the backfill's reads) fails a
        // status, not the run: the pipelines retry their own reads.
        let statuses = match pipelines.status(None).await {
            Ok(statuses) => statuses,
            Err(error) => {
                let since = *unanswered.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(120) {
                    anyhow::bail!("no status for 2 minutes: {error}");
                }
                tokio::time::sleep(poll).await;
                continue;
            }
        };
        unanswered = None;
        for status in &statuses {
            if let Some(error) = status.error.as_ref().filter(|_| status.state == "failed") {
                anyhow::bail!("the pipeline failed: {error}");
            }
        }
        if statuses.iter().all(|status| {
            status
                .partitions
                .iter()
                .all(|p| p.processed_offset == p.end_offset)
        }) {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    for name in &names {
        pipelines.checkpoint(name).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds()? - cpu_before;
    let run = Run {
        seconds,
        cpu_seconds,
        events,
        outputs: None,
        open: None,
    };
    Ok((run, pipelines, name))
}

/// CPU time (user + system) of every thread of this process so far, from `/proc/self/stat`
/// (fields 14 and 15, in clock ticks of 1/100 s: Linux's USER_HZ on every architecture
/// sluice runs on).
pub(crate) fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc/self/stat format")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3, so fields 14 and 15 are at indexes 11 and 12.
    let ticks = |index: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(index)
            .context("unexpected /proc/self/stat format")?
            .parse::<u64>()? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}
