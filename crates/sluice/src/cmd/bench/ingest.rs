//! `sluice bench ingest`: an HTTP load generator for the collector. Keep-alive connections each
//! send batches (or single events) of realistic synthetic events as fast as the server answers,
//! or at a fixed total rate; latency is measured per request (from the scheduled send time when
//! a rate is set, so a stalled server is not hidden by coordinated omission).

use super::percentile_ms;
use crate::client::{Connection, Target, WriteTarget, basic_auth};
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use sluice_core::synthetic::{Synthetic, Template};
use sluice_core::time::now_millis;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct IngestBenchArgs {
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Events per request; 1 sends single events to /v1/track, more sends /v1/batch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=5000))]
    batch: u32,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Target events per second in total (default: as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
    /// Distinct users in the generated stream.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Maximum event-time disorder, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    disorder_ms: i64,
    #[command(flatten)]
    target: WriteTarget,
}

#[derive(Default)]
struct Counters {
    events: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    next_id: AtomicU64,
}

pub fn run(args: IngestBenchArgs) -> anyhow::Result<()> {
    let (_, target, key) = args.target.resolve()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(args, target, key))
}

async fn bench(args: IngestBenchArgs, target: Target, key: String) -> anyhow::Result<()> {
    let batch = args.batch as usize;
    let now = now_millis();
    let mut generator = Synthetic::new(now as u64, now);
    generator.spacing_micros = 0;
    generator.users = args.users.max(1);
    generator.max_disorder = args.disorder_ms.max(0);
    // Distinct bodies so the server sees varied users and events; ids are stamped per send.
    let single = batch == 1;
    let templates: Arc<Vec<Template>> = Arc::new(
        (0..64)
            .map(|_| {
                let template = generator.segment_batch(batch, now);
                // A one-message batch sends the message itself, cut out once here.
                if single {
                    template.first_message()
                } else {
                    template
                }
            })
            .collect(),
    );
    let path = if single { "/v1/track" } else { "/v1/batch" };
    let counters = Arc::new(Counters {
        next_id: AtomicU64::new((now as u64) << 20),
        ..Counters::default()
    });
    let duration = Duration::from_secs(args.duration.max(1));
    let start = Instant::now();
    let deadline = start + duration;
    let per_connection_interval = args.rate.map(|rate| {
        Duration::from_secs_f64(args.connections as f64 * batch as f64 / rate.max(1) as f64)
    });
    let auth = Arc::new(basic_auth(&key));
    eprintln!(
        "bench ingest: {} connections, {batch} events/request, {}, {}s against {}",
        args.connections,
        args.rate
            .map_or("max rate".to_owned(), |rate| format!("{rate} events/s")),
        duration.as_secs(),
        target.host
    );

    let mut tasks = Vec::new();
    for worker in 0..args.connections as usize {
        let (target, templates, counters, auth) = (
            target.clone(),
            Arc::clone(&templates),
            Arc::clone(&counters),
            Arc::clone(&auth),
        );
        tasks.push(tokio::spawn(async move {
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let mut connection = match Connection::open(&target).await {
                Ok(connection) => connection,
                Err(error) => {
                    eprintln!("connection {worker}: {error:#}");
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    return histogram;
                }
            };
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            let mut scheduled = Instant::now();
            let mut round = worker;
            while Instant::now() < deadline {
                if let Some(interval) = per_connection_interval {
                    scheduled += interval;
                    tokio::time::sleep_until(scheduled.into()).await;
                } else {
                    scheduled = Instant::now();
                }
                let template = &templates[round % templates.len()];
                round += 1;
                let first_id = counters
                    .next_id
                    .fetch_add(template.len() as u64, Ordering::Relaxed);
                let body = template.fill(first_id);
                match connection
                    .send(Method::POST, path, &headers, Bytes::from(body))
                    .await
                {
                    Ok(reply) if reply.status == StatusCode::OK => {
                        counters
                            .events
                            .fetch_add(template.len() as u64, Ordering::Relaxed);
                        counters.requests.fetch_add(1, Ordering::Relaxed);
                        let micros = scheduled.elapsed().as_micros().max(1) as u64;
                        let _ = histogram.record(micros.min(60_000_000));
                    }
                    Ok(reply) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        if reply.status == StatusCode::TOO_MANY_REQUESTS
                            || reply.status == StatusCode::SERVICE_UNAVAILABLE
                        {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    Err(_) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if let Ok(fresh) = Connection::open(&target).await {
                            connection = fresh;
                        }
                    }
                }
            }
            histogram
        }));
    }

    let reporter = {
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let events = counters.events.load(Ordering::Relaxed);
                eprintln!(
                    "  {:>4.0}s  {:>10} events/s  {:>6} errors",
                    start.elapsed().as_secs_f64(),
                    events - last,
                    counters.errors.load(Ordering::Relaxed)
                );
                last = events;
            }
        })
    };
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for task in tasks {
        histogram.add(task.await?)?;
    }
    reporter.abort();
    let elapsed = start.elapsed().as_secs_f64();
    let events = counters.events.load(Ordering::Relaxed);
    let requests = counters.requests.load(Ordering::Relaxed);
    let errors = counters.errors.load(Ordering::Relaxed);
    let events_per_sec = events as f64 / elapsed;
    println!(
        "events accepted   {events} in {elapsed:.1}s = {events_per_sec:.0} events/s ({:.0} requests/s)",
        requests as f64 / elapsed
    );
    println!(
        "request latency   p50 {:.3} ms  p99 {:.3} ms  p999 {:.3} ms  max {:.3} ms",
        percentile_ms(&histogram, 0.5),
        percentile_ms(&histogram, 0.99),
        percentile_ms(&histogram, 0.999),
        histogram.max() as f64 / 1000.0
    );
    println!("errors            {errors}");
    let summary = serde_json::json!({
        "events_per_sec": events_per_sec.round(),
        "requests_per_sec": (requests as f64 / elapsed).round(),
        "p50_ms": percentile_ms(&histogram, 0.5),
        "p99_ms": percentile_ms(&histogram, 0.99),
        "p999_ms": percentile_ms(&histogram, 0.999),
        "errors": errors,
        "batch": batch,
        "connections": args.connections,
    });
    println!("{summary}");
    Ok(())
}
