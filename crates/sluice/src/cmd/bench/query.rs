//! `sluice bench query`: dashboard reads. Starts sluice in-process, sends 24 hours of page views
//! (16 per platform and minute by default, over HTTP, event times from 24 h ago to now), waits
//! until every window but the newest is final, then keeps `--connections` keep-alive clients
//! reading one metric's last 24 h of 1-minute windows — one group key's series, 1440 points —
//! for `--duration` seconds. Reports queries/s and latency percentiles; the last stdout line is
//! JSON with `queries_per_sec`, `p50_ms`, `p99_ms`.

use super::percentile_ms;
use super::server::BenchServer;
use crate::UserError;
use crate::client::{Connection, basic_auth};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_core::time::{Millis, format_millis, now_millis};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The benchmark's metric: one group key (the platform), 1-minute windows.
pub const METRIC: &str = "CREATE METRIC bench_views AS SELECT properties.platform AS platform, \
     COUNT(*) AS views, COUNT(DISTINCT user_id) AS users, SUM(properties.amount) AS amount \
     FROM events WHERE event = 'Page Viewed' GROUP BY platform, TUMBLE(timestamp, INTERVAL '1' MINUTE)";

const PLATFORMS: [&str; 4] = ["ios", "android", "web", "desktop"];
const MINUTES: i64 = 24 * 60;

#[derive(Debug, Args)]
pub struct QueryBenchArgs {
    /// Seconds of reading.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent keep-alive reading clients.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    connections: u32,
    /// Events per platform and minute of history (enough that every log partition sees
    /// events every minute, so every window but the newest becomes final).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    per_minute: u32,
    /// The query string to read [default: from=now-24h&to=now&filter=platform:ios].
    #[arg(long, value_name = "QUERY")]
    query: Option<String>,
    /// Where the server keeps its data [default: a temporary directory, removed afterwards].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub fn run(args: QueryBenchArgs) -> anyhow::Result<()> {
    if args.duration == 0 {
        return Err(UserError("--duration must be at least 1".into()).into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(args))
}

async fn bench(args: QueryBenchArgs) -> anyhow::Result<()> {
    let server = BenchServer::start("query", args.data_dir.clone(), &[METRIC], &[]).await?;
    let query = args
        .query
        .clone()
        .unwrap_or_else(|| "from=now-24h&to=now&filter=platform:ios".to_owned());
    let path = format!("/v1/metrics/bench_views?{query}");
    println!(
        "sluice bench query: {} connections reading {path} for {} s",
        args.connections, args.duration
    );
    let sent = history(&server, args.per_minute).await?;
    println!("history: {sent} events over the last 24 h sent");
    let (points, bytes) = settle(&server, &path).await?;
    println!("answer: {points} points, {bytes} bytes");

    let auth = Arc::new(format!("Bearer {}", server.read_key));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (target, path, auth, errors) = (
            server.target.clone(),
            path.clone(),
            Arc::clone(&auth),
            Arc::clone(&errors),
        );
        tasks.push(tokio::spawn(async move {
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let mut connection = Connection::open(&target).await?;
            let headers = [("authorization", auth.as_str())];
            while Instant::now() < deadline {
                let sent = Instant::now();
                let reply = connection
                    .send(Method::GET, &path, &headers, Bytes::new())
                    .await?;
                if reply.status == StatusCode::OK {
                    let micros = sent.elapsed().as_micros().max(1) as u64;
                    let _ = histogram.record(micros.min(60_000_000));
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(histogram)
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for task in tasks {
        histogram.add(task.await??)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let queries = histogram.len();
    let errors = errors.load(Ordering::Relaxed);
    let qps = queries as f64 / elapsed;
    println!("queries           {queries} in {elapsed:.1} s = {qps:.0} queries/s");
    println!(
        "latency           p50 {:.3} ms  p99 {:.3} ms  p999 {:.3} ms  max {:.3} ms",
        percentile_ms(&histogram, 0.5),
        percentile_ms(&histogram, 0.99),
        percentile_ms(&histogram, 0.999),
        histogram.max() as f64 / 1000.0
    );
    println!("errors            {errors}");
    server.stop().await?;
    let summary = serde_json::json!({
        "bench": "query",
        "queries_per_sec": qps.round(),
        "p50_ms": percentile_ms(&histogram, 0.5),
        "p99_ms": percentile_ms(&histogram, 0.99),
        "p999_ms": percentile_ms(&histogram, 0.999),
        "points": points,
        "answer_bytes": bytes,
        "connections": args.connections,
        "errors": errors,
    });
    println!("{summary}");
    Ok(())
}

/// Sends `per_minute` page views per platform for every minute of the last 24 h, oldest first.
async fn history(server: &BenchServer, per_minute: u32) -> anyhow::Result<u64> {
    let now = now_millis();
    let first = now - now.rem_euclid(60_000) - (MINUTES - 1) * 60_000;
    let mut rng = SmallRng::seed_from_u64(7);
    let mut connection = Connection::open(&server.target).await?;
    let auth = basic_auth(&server.write_key);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let mut batch: Vec<serde_json::Value> = Vec::with_capacity(500);
    let mut sent = 0u64;
    for minute in 0..MINUTES {
        for n in 0..per_minute {
            for platform in PLATFORMS {
                let time: Millis =
                    first + minute * 60_000 + i64::from(n) * 60_000 / i64::from(per_minute);
                let user = rng.random_range(0..500u32);
                batch.push(serde_json::json!({
                    "type": "track", "event": "Page Viewed",
                    "anonymousId": format!("anon-{user}"), "userId": format!("user-{user}"),
                    "timestamp": format_millis(time.min(now)),
                    "properties": {"platform": platform, "amount": rng.random_range(1..100u32)},
                }));
            }
        }
        if batch.len() >= 400 || minute == MINUTES - 1 {
            let body = serde_json::json!({ "batch": batch }).to_string();
            let reply = connection
                .send(Method::POST, "/v1/batch", &headers, Bytes::from(body))
                .await?;
            if reply.status != StatusCode::OK {
                bail!(
                    "sending history failed: {} {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                );
            }
            sent += batch.len() as u64;
            batch.clear();
        }
    }
    Ok(sent)
}

/// Waits until the answer holds (nearly) every minute and all but the newest are final.
async fn settle(server: &BenchServer, path: &str) -> anyhow::Result<(usize, usize)> {
    let mut connection = Connection::open(&server.target).await?;
    let auth = format!("Bearer {}", server.read_key);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let reply = connection
            .send(Method::GET, path, &[("authorization", &auth)], Bytes::new())
            .await?;
        let answer: serde_json::Value =
            serde_json::from_slice(&reply.body).context("the answer is not JSON")?;
        let points = answer["series"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .filter_map(|s| s["points"].as_array())
                    .flatten()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let open = points.iter().filter(|p| p[2] == false).count();
        if reply.status == StatusCode::OK && points.len() >= 1439 && open <= 2 {
            return Ok((points.len(), reply.body.len()));
        }
        if Instant::now() > deadline {
            bail!(
                "the history did not settle in 120 s: {} points, {open} open ({})",
                points.len(),
                reply.status
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
