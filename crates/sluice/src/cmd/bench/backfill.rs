//! `sluice bench backfill`: the whole server's backfill of a Q1-class metric (issue 15's
//! workload). Writes N synthetic events of T tenants with Zipf-skewed sizes, K page URLs, U
//! users, 10 s of disorder and 0.1 % of events five minutes late into the source topic of the
//! config's log (P partitions, keyed by user as the collector keys them: the file log in the
//! bench's directory, or the brokers of a `kafka://` `log.url`), then defines the metric
//! with backfill through the exactly-once pipelines `sluice serve` runs, and times it until
//! every partition has caught up and its last checkpoint has committed. Then it exports every
//! tenant's windows, answers each tenant's whole range as one JSON answer, and counts the
//! stored rows.
//!
//! The last stdout line is one JSON object: events/s (wall and per CPU-second), the result
//! rows (distinct tenant, key and window), the rows stored for them (one final row per window
//! every partition has closed, plus one open row per partition that still has the window
//! open), the store's bytes per result row, the process's peak RSS, and how fast every
//! tenant's windows are exported (the engine of `GET …/export`, without HTTP).

use super::stream::{fresh_store, run_backfill, write_events};
use crate::UserError;
use crate::config::ConfigArgs;
use clap::Args;
use sluice_core::synthetic::Synthetic;
use sluice_core::time::Millis;
use sluice_log::{AckMode, LogBackend};
use sluice_store::RowQuery;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

/// The metric of issue 15: page views, distinct users and average duration per URL per minute.
pub const Q1: &str = "CREATE METRIC q1 AS SELECT properties.url AS url, COUNT(*) AS cnt,
  COUNT(DISTINCT user_id) AS uniq_users, AVG(properties.duration_ms) AS avg_duration_ms
FROM events WHERE event = 'Page Viewed'
GROUP BY url, TUMBLE(timestamp, INTERVAL '1' MINUTE)
WITH (out_of_orderness = '10s', allowed_lateness = '10m')";

#[derive(Debug, Args)]
pub struct BackfillBenchArgs {
    /// Events to write and backfill.
    #[arg(long, value_name = "N", default_value_t = 2_000_000)]
    events: u64,
    /// Tenants, of Zipf-skewed sizes.
    #[arg(long, value_name = "T", default_value_t = 20)]
    tenants: u64,
    /// Distinct page URLs (the metric's group keys).
    #[arg(long, value_name = "K", default_value_t = 2_000)]
    keys: u64,
    /// Distinct users.
    #[arg(long, value_name = "U", default_value_t = 200_000)]
    users: u64,
    /// Events per second of event time: how many events one minute's windows hold, and how
    /// much event time the workload spans (10 M events at 2,800/s are an hour, issue 15's
    /// shape; windows closing within the metric's 10 minutes of allowed lateness of the end
    /// stay open).
    #[arg(long, value_name = "R", default_value_t = 2_800)]
    event_rate: u64,
    /// Partitions of the source topic [default: log.partitions of the config, 8].
    #[arg(long, value_name = "P")]
    partitions: Option<u32>,
    /// Where to put the log and the store [default: a temporary directory, removed
    /// afterwards]. Events written by an earlier run of the same shape are reused.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Config file for the [log], [stream] and [store] settings; keys it omits keep defaults.
    /// A `store.url` of PostgreSQL benches that database (metric q1 is deleted there first).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn run(args: BackfillBenchArgs) -> anyhow::Result<()> {
    if [args.events, args.keys, args.users].contains(&0)
        || !(1..=10_000).contains(&args.tenants)
        || args.keys > 100_000_000
        || !(1..=1_000_000).contains(&args.event_rate)
    {
        return Err(UserError(
            "--events and --users must be larger than 0, --tenants 1 to 10000, --keys 1 to 100000000, --event-rate 1 to 1000000".into(),
        )
        .into());
    }
    let config = ConfigArgs {
        config: args.config.clone(),
        data_dir: None,
    }
    .load(&[])
    .map_err(|error| UserError(error.to_string().trim_end().to_owned()))?;
    let partitions = args.partitions.unwrap_or(config.log.partitions);
    if !(1..=1024).contains(&partitions) {
        return Err(UserError("--partitions must be between 1 and 1024".into()).into());
    }
    let (_temp, dir) = super::work_dir(args.data_dir.as_deref(), "backfill")?;
    let mut log_config = config.log.clone();
    // Writing the input is not what is measured: acknowledge at write(2).
    log_config.ack = AckMode::Write;
    let topic = format!(
        "bench.backfill.{}x{}.{}t{}k{}u{}r",
        args.events, partitions, args.tenants, args.keys, args.users, args.event_rate
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The log of the config: the file log in the bench's directory, or Kafka brokers.
    let log = runtime
        .block_on(LogBackend::open(&log_config, &dir))
        .map_err(crate::log_tools::user_or_internal)?;
    println!(
        "sluice bench backfill: {} events, {} tenants, {} URLs, {} users, {partitions} partitions, in {}",
        args.events,
        args.tenants,
        args.keys,
        args.users,
        dir.display()
    );
    let mut source = Synthetic::new(15, 1_714_564_800_000);
    source.spacing_micros = 1_000_000 / args.event_rate;
    source.tenants = args.tenants;
    source.urls = args.keys;
    source.users = args.users;
    source.max_disorder = 10_000;
    source.late_per_mille = 1;
    source.late_by = 300_000;
    let tenants = source.tenant_names();
    if let Some((seconds, bytes)) =
        runtime.block_on(write_events(&log, &topic, args.events, partitions, source))?
    {
        println!(
            "write: {} events ({:.0} B on average) in {seconds:.2} s",
            args.events,
            bytes as f64 / args.events as f64
        );
    } else {
        println!("write: reusing the events already in topic {topic}");
    }
    runtime.block_on(backfill(
        &log,
        &topic,
        &dir,
        &config,
        args.events,
        partitions,
        tenants,
    ))
}

async fn backfill(
    log: &LogBackend,
    topic: &str,
    dir: &std::path::Path,
    config: &crate::config::Config,
    events: u64,
    partitions: u32,
    tenants: Vec<String>,
) -> anyhow::Result<()> {
    let store = fresh_store(dir, config, &[Q1]).await?;
    let (run, pipelines, name) = run_backfill(
        log,
        topic,
        store.clone(),
        config,
        config.store.checkpoint_interval(),
        &[Q1],
    )
    .await?;
    let generation = pipelines
        .plan(&name)
        .map_or(0, |(_, generation)| generation);
    let export = export_all(&pipelines, &store, config, &name, &tenants).await;
    let answers = answer_all(&pipelines, &store, config, &name, &tenants).await;
    pipelines.stop().await;
    let (export, answers) = (export?, answers?);
    let per_second = events as f64 / run.seconds;
    let per_core = events as f64 / run.cpu_seconds.max(1e-9);
    println!(
        "backfill: {events} events in {:.2} s = {per_second:.0} events/s; CPU {:.2} s = {per_core:.0} events/s per core",
        run.seconds, run.cpu_seconds
    );

    let (mut stored_rows, mut open_rows) = (0u64, 0u64);
    let mut results = HashSet::new();
    for tenant in tenants {
        let rows = store
            .query_rows(RowQuery {
                metric: name.clone(),
                generation,
                tenant,
                from: Millis::MIN,
                to: Millis::MAX,
            })
            .await?;
        stored_rows += rows.len() as u64;
        open_rows += rows.iter().filter(|row| row.partition.is_some()).count() as u64;
        results.extend(rows.into_iter().map(|row| (row.key, row.window_start)));
    }
    let store_bytes = store.size().await?;
    let result_rows = results.len() as u64;
    let peak_rss = peak_rss_bytes()?;
    println!(
        "store: {result_rows} result rows stored as {stored_rows} rows ({:.2} per result row; {open_rows} of them open windows) in {store_bytes} bytes = {:.0} B per result row",
        stored_rows as f64 / result_rows.max(1) as f64,
        store_bytes as f64 / result_rows.max(1) as f64
    );
    println!(
        "export: {} rows ({} MB of NDJSON) in {:.2} s = {:.0} rows/s (GET /v1/metrics/q1/export's engine, every tenant, in turn; {:.1} ms to a tenant's first chunk)",
        export.rows,
        export.bytes / 1_000_000,
        export.seconds,
        export.rows as f64 / export.seconds.max(1e-9),
        export.first_chunk_ms
    );
    println!(
        "JSON API: every tenant's whole range as one answer (GET /v1/metrics/q1?from=0, a fresh cache each) in {:.2} s = {:.0} windows/s ({} MB of JSON)",
        answers.seconds,
        result_rows as f64 / answers.seconds.max(1e-9),
        answers.bytes / 1_000_000
    );
    println!(
        "peak RSS: {:.0} MB (the whole process, writing the events included)",
        peak_rss as f64 / 1e6
    );
    let summary = serde_json::json!({
        "bench": "backfill",
        "events": events,
        "partitions": partitions,
        "seconds": run.seconds,
        "events_per_sec": per_second.round(),
        "events_per_cpu_sec": per_core.round(),
        "result_rows": result_rows,
        "stored_rows": stored_rows,
        "open_rows": open_rows,
        "store_bytes": store_bytes,
        "store_bytes_per_result_row": (store_bytes as f64 / result_rows.max(1) as f64).round(),
        "export_rows": export.rows,
        "export_rows_per_sec": (export.rows as f64 / export.seconds.max(1e-9)).round(),
        "export_first_chunk_ms": (export.first_chunk_ms * 10.0).round() / 10.0,
        "json_rows_per_sec": (result_rows as f64 / answers.seconds.max(1e-9)).round(),
        "peak_rss_bytes": peak_rss,
    });
    println!("{summary}");
    Ok(())
}

/// What exporting every tenant's windows took.
struct Exported {
    rows: u64,
    bytes: u64,
    /// From asking for a tenant's export to its first chunk, on average.
    first_chunk_ms: f64,
    seconds: f64,
}

/// Exports every window of every tenant through the serving engine the HTTP API uses (while
/// the pipelines still run: open windows come from them), counting rows and bytes.
async fn export_all(
    pipelines: &sluice_pipelines::Pipelines<sluice_log::LogBackend>,
    store: &sluice_store::StoreBackend,
    config: &crate::config::Config,
    metric: &str,
    tenants: &[String],
) -> anyhow::Result<Exported> {
    use futures::TryStreamExt;
    use sluice_api::query::Serving;
    use sluice_api::query::export::ExportParams;
    let serving = Serving::new(
        std::sync::Arc::new(pipelines.clone()),
        store.clone(),
        config.api.clone(),
    );
    let started = Instant::now();
    let (mut rows, mut bytes) = (0u64, 0u64);
    let mut first_chunks = std::time::Duration::ZERO;
    for tenant in tenants {
        let asked = Instant::now();
        let mut first = true;
        let params = ExportParams::from_pairs(vec![("from".into(), "0".into())])
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let mut chunks = std::pin::pin!(
            serving
                .export(tenant, metric, params)
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?
        );
        while let Some(chunk) = chunks.try_next().await? {
            if std::mem::take(&mut first) {
                first_chunks += asked.elapsed();
            }
            rows += chunk.iter().filter(|&&byte| byte == b'\n').count() as u64;
            bytes += chunk.len() as u64;
        }
    }
    Ok(Exported {
        rows,
        bytes,
        first_chunk_ms: first_chunks.as_secs_f64() * 1000.0 / tenants.len().max(1) as f64,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What answering every tenant's whole range took.
struct Answered {
    bytes: u64,
    seconds: f64,
}

/// Asks the serving engine the HTTP API uses for every tenant's whole range, one answer each
/// (the issue's "read everything back through `GET /v1/metrics/q1`"), from a fresh serving
/// engine (no cache), with the answer bounds raised so that the largest tenant fits.
async fn answer_all(
    pipelines: &sluice_pipelines::Pipelines<sluice_log::LogBackend>,
    store: &sluice_store::StoreBackend,
    config: &crate::config::Config,
    metric: &str,
    tenants: &[String],
) -> anyhow::Result<Answered> {
    use sluice_api::query::Serving;
    use sluice_api::query::params::SeriesParams;
    let mut api = config.api.clone();
    api.max_points = 100_000_000;
    api.max_store_rows = 100_000_000;
    api.cache_max_windows = 100_000_000;
    let serving = Serving::new(std::sync::Arc::new(pipelines.clone()), store.clone(), api);
    let started = Instant::now();
    let mut bytes = 0u64;
    for tenant in tenants {
        let params = SeriesParams::from_pairs(vec![("from".into(), "0".into())])
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let answer = serving
            .series_json(tenant, metric, &params)
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        bytes += answer.len() as u64;
    }
    Ok(Answered {
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The process's peak resident set (`VmHWM` of `/proc/self/status`), in bytes.
pub(super) fn peak_rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kilobytes = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/self/status"))?;
    Ok(kilobytes * 1024)
}
